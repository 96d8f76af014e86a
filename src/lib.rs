//! # pyfiber
//!
//! How Python got from blocking sockets to `async/await`, in runnable Rust.
//! Python's generator protocol (`send`, `next`, `throw`, `close`, `yield`,
//! `yield from`) runs on stackful fibers, one per generator; on top of it sit
//! the tutorials' `Future`, `Task.step` and selector loop, crawling URLs over
//! non-blocking sockets.
//!
//! ```
//! use pyfiber::{Generator, Value};
//!
//! // def countdown(n):
//! //     while n > 0:
//! //         yield n
//! //         n -= 1
//! fn countdown(mut n: i64) -> Generator {
//!     Generator::new(move |co| {
//!         while n > 0 {
//!             co.yield_(n.into())?;
//!             n -= 1;
//!         }
//!         Ok(Value::None)
//!     })
//! }
//! let got: Vec<Value> = countdown(3).map(Result::unwrap).collect();
//! assert_eq!(got, vec![Value::Int(3), Value::Int(2), Value::Int(1)]);
//! ```
//!
//! The module map and the Python→Rust mapping are in `NOTES.md`.

// The crate's promises, checked by the compiler: no `unsafe` (corosensei and
// polling hold the sharp parts) except in `stack_pool::batch`, the one
// module allowed it (fiber stacks carved from one mapping; NOTES, "Creating
// past the pool"), and every public item documented with the Python thing it
// mirrors.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod aio;
pub mod chain;
pub mod crawler;
pub mod debug;
pub mod event_loop;
pub mod exception;
pub mod future;
pub mod generator;
pub mod net;
pub mod selector;
pub mod server;
pub mod stack_pool;
pub mod task;
pub mod timeline;
pub mod trace;
pub mod value;

pub use event_loop::{get_event_loop, EventLoop};
pub use exception::{format_exception, Except, Exception, ExceptionClass, OsError, PyResult};
pub use future::Future;
pub use generator::{Co, FrameInfo, GenState, Generator, Protocol, YieldFrom};
pub use net::{Response, Socket};
pub use selector::{DefaultSelector, EVENT_READ, EVENT_WRITE};
pub use task::Task;
pub use value::{Object, Value};
