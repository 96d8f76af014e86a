//! `socket_server_sync`: a blocking echo server that serves one client at a
//! time (twin of `examples/python/socket_server_sync.py`). It prints what
//! yuchaoshui/notes `Python异步并发/socket_server_sync.py` prints
//! (`accepted <conn> from <addr>`,
//! `echoing <bytes> to <conn>`, the connection's repr), plus `closing
//! <addr>` when a client is done and errors on stderr; it binds 127.0.0.1
//! and takes `--port`. Its first line is `Running on localhost:8888 (TCP
//! echo, not HTTP: try nc localhost 8888)`, not the original's
//! `http://localhost:8888/`, which curl would try and fail on.
//!
//! Why this exists: it is the server-side `sync.py`. Every call blocks:
//! `accept()` waits for a client, `recv()` for its bytes, `sendall()` until
//! the kernel took them. While one client is served nobody else is: the next
//! client's connection is completed by the kernel and waits in the listen
//! backlog, unanswered, until the current client closes. `socket_server_async`
//! removes exactly that limit.
//!
//! ```text
//! cargo run --example socket_server_sync -- [--port 8888] [--quiet]
//! cargo run --example socket_client                      # in another terminal
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use pyfiber::net::Socket;
use pyfiber::value::bytes_repr;
use pyfiber::PyResult;

/// The command line, as the Python twin's argparse declares it.
#[derive(Parser)]
#[command(about = "Blocking echo server: serves one client at a time.")]
struct Args {
    /// Port to listen on, on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8888)]
    port: u16,
    /// Don't print a line per connection and per echo.
    #[arg(long)]
    quiet: bool,
}

/// Python's `print(addr)` of an `(host, port)` tuple: `('127.0.0.1', 8888)`.
fn py_addr(addr: SocketAddr) -> String {
    format!("('{}', {})", addr.ip(), addr.port())
}

/// `serve(conn, addr)`: echo what the client sends until it closes its side.
/// Returns the error that ended the connection early, if any.
fn serve(conn: &Socket, quiet: bool) -> PyResult<()> {
    loop {
        let data = conn.recv(4096)?;
        if data.is_empty() {
            return Ok(());
        }
        if !quiet {
            println!("echoing {} to {conn:?}", bytes_repr(&data));
        }
        conn.sendall(&data)?;
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // sock = socket.socket(); setsockopt(SO_REUSEADDR); bind; listen
    let sock = match Socket::listen_on(("127.0.0.1", args.port), 4096) {
        Ok(sock) => sock,
        Err(e) => {
            eprintln!("could not listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    let port = match sock.getsockname() {
        Ok(addr) => addr.port(),
        Err(e) => {
            eprintln!("getsockname failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Not the original's `Running on http://localhost:8888/`: this is TCP,
    // not HTTP, and curl at that URL fails with "Received HTTP/0.9".
    println!("Running on localhost:{port} (TCP echo, not HTTP: try nc localhost {port})");
    loop {
        // conn, addr = sock.accept()   <- blocks until a client comes
        let (conn, addr) = match sock.accept() {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: this client is lost, the server lives on.
                eprintln!("accept failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        let addr = py_addr(addr);
        if !args.quiet {
            println!("accepted {conn:?} from {addr}");
        }
        if let Err(e) = serve(&conn, args.quiet) {
            eprintln!("error on {addr}: {}", e.line());
        }
        if !args.quiet {
            println!("closing {addr}");
        }
        // conn.close(): dropping the socket closes it.
        drop(conn);
    }
}
