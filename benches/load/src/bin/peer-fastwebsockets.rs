//! A fastwebsockets echo server, shaped like the crate's own echo example:
//! hyper 1 upgrade, a task per client, `FragmentCollector`, and (by default)
//! a current_thread runtime with `unconstrained` client tasks.
//!
//! ```text
//! peer-fastwebsockets [--port 0] [--multi-thread]
//! ```
//! Prints `peer-fastwebsockets listening on ws://ADDR`.

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use rakit_load::Args;
use tokio::net::TcpListener;

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        let _ = tokio::task::unconstrained(handle_client(fut)).await;
    });
    Ok(response)
}

fn main() {
    let args = Args::from_env(1);
    let port: u16 = args.num("port", 0);
    let multi = args.flag("multi-thread");
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_io()
    .build()
    .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!(
            "peer-fastwebsockets listening on ws://{} ({})",
            listener.local_addr().expect("addr"),
            if multi {
                "multi_thread"
            } else {
                "current_thread"
            }
        );
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = http1::Builder::new()
                    .serve_connection(io, service_fn(server_upgrade))
                    .with_upgrades();
                let _ = conn.await;
            });
        }
    });
}
