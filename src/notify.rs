//! systemd's readiness protocol (sd_notify(3)), without libsystemd: under a `Type=notify`
//! unit, `systemctl start` returns once the daemon sends `READY=1` to the datagram socket
//! named by `NOTIFY_SOCKET` (a path, or `@name` for Linux's abstract namespace). The daemon
//! sends it right after its listen line, when it serves (with `[cluster]`: once its Redis
//! link is up, SPEC 18), so a restart script can start a new instance and stop the old one
//! as soon as `systemctl start` returns. Without `NOTIFY_SOCKET` it does nothing.

use std::io;
use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`) to systemd; `Ok(false)` when not run under a notify unit.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        send_abstract(&socket, name, state)?;
    } else {
        socket.send_to(state.as_bytes(), &target)?;
    }
    Ok(true)
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], state: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(state.as_bytes(), &addr).map(drop)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_socket: &UnixDatagram, _name: &[u8], _state: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist on Linux only",
    ))
}
