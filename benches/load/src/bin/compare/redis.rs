//! A fresh redis-server per cluster run.

use super::*;

/// A fresh `redis-server` for one run; killed (and its socket removed) on drop.
pub(super) struct RedisRun {
    pub(super) child: Child,
    /// For node (`ioredis`): a socket path or a `redis://` URL.
    pub(super) location: String,
    /// For rakit's `redis_url`.
    pub(super) url: String,
    pub(super) sock: Option<PathBuf>,
    pub(super) port: u16,
}

impl RedisRun {
    pub(super) fn start(setup: &RedisSetup) -> RedisRun {
        let mut cmd = Command::new(&setup.program);
        cmd.args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&setup.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let (location, url, sock, port) = if setup.tcp {
            // A free port: bind port 0, read it, release it.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
            let url = format!("redis://127.0.0.1:{port}");
            (url.clone(), url, None, port)
        } else {
            let sock = setup.dir.join("redis.sock");
            let _ = std::fs::remove_file(&sock);
            cmd.args(["--port", "0", "--unixsocketperm", "700", "--unixsocket"])
                .arg(&sock);
            let path = sock.display().to_string();
            (path.clone(), format!("unix:{path}"), Some(sock), 0)
        };
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", setup.program.display()));
        let r = RedisRun {
            child,
            location,
            url,
            sock,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.query(&["PING"]).as_deref() != Some("+PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// One command; the reply's last line (enough for PING and PUBSUB NUMSUB).
    pub(super) fn query(&self, args: &[&str]) -> Option<String> {
        use std::io::Read;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req += &format!("${}\r\n{a}\r\n", a.len());
        }
        let mut buf = vec![0u8; 512];
        let n = if let Some(sock) = &self.sock {
            let mut s = std::os::unix::net::UnixStream::connect(sock).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            s.write_all(req.as_bytes()).ok()?;
            s.read(&mut buf).ok()?
        } else {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            s.write_all(req.as_bytes()).ok()?;
            s.read(&mut buf).ok()?
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        text.lines().last().map(str::to_owned)
    }

    /// Waits until `n` connections subscribe to `channel`.
    pub(super) fn wait_subscribers(&self, channel: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let want = format!(":{n}");
        while self.query(&["PUBSUB", "NUMSUB", channel]).as_deref() != Some(want.as_str()) {
            assert!(
                Instant::now() < deadline,
                "{n} subscribers to {channel} did not show up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(sock) = &self.sock {
            let _ = std::fs::remove_file(sock);
        }
    }
}
