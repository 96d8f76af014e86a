//! A generator made right after another one finished and was dropped starts
//! as new as any: `Generator::new` reuses the allocation of a dropped,
//! finished generator (`SPARES` in src/generator.rs) and sets only the
//! fields a generator's life changes, so a field it forgot to set would
//! show here as the previous generator's name, state, line or delegation.
//!
//! Python has nothing to compare with: each `gen()` is a new object there.
//! What is checked is what a fresh generator shows in Python: its own
//! `__name__`, `GEN_CREATED`, `gi_frame` at the line that made it,
//! `gi_yieldfrom` None, and its own body's values.

use pyfiber::{Co, GenState, Generator, PyResult, Value};

fn two(co: &Co) -> PyResult<Value> {
    co.yield_(1.into())?;
    co.yield_(2.into())?;
    Ok(Value::Int(3))
}

fn delegating(co: &Co) -> PyResult<Value> {
    co.yield_from(&Generator::new(two))
}

/// The checks of a fresh generator, then runs it to its end.
fn assert_fresh(g: &Generator, name: &str, line: u32) {
    assert_eq!(g.name(), name);
    assert_eq!(g.state(), GenState::Created);
    assert_eq!(g.gi_frame().expect("a frame").f_lineno(), line);
    assert!(g.gi_yieldfrom().is_none());
    assert!(g.delegating_to().is_none());
    assert_eq!(g.next(), Ok(Value::Int(1)));
    assert_eq!(g.state(), GenState::Suspended);
    assert_eq!(g.next(), Ok(Value::Int(2)));
    assert_eq!(
        g.next(),
        Err(pyfiber::Exception::StopIteration(Value::Int(3)))
    );
    assert_eq!(g.state(), GenState::Closed);
    assert!(g.gi_frame().is_none());
}

#[test]
fn a_generator_made_after_a_finished_one_starts_fresh() {
    for round in 0..100 {
        // Finished in each way a generator can be: returned, closed while
        // suspended in a `yield from`, closed before it started, raised.
        let named = Generator::named("first", two);
        while named.next().is_ok() {}
        drop(named);
        let line = line!() + 1;
        let g = Generator::new(two);
        assert_fresh(&g, "two", line);
        drop(g);

        let d = Generator::new(delegating);
        assert_eq!(d.next(), Ok(Value::Int(1)));
        assert!(d.gi_yieldfrom().is_some());
        assert_eq!(d.close(), Ok(Value::None));
        drop(d);
        let line = line!() + 1;
        let g = Generator::named(format!("second {round}"), two);
        assert_fresh(&g, &format!("second {round}"), line);

        let unstarted = Generator::new(delegating);
        assert_eq!(unstarted.close(), Ok(Value::None));
        drop(unstarted);
        let raised = Generator::new(|_co| Err(pyfiber::Exception::ValueError("no".into())));
        assert!(raised.next().is_err());
        drop(raised);
        let line = line!() + 1;
        let g = Generator::new(two);
        assert_fresh(&g, "two", line);
    }
}

#[test]
fn a_suspended_generator_dropped_is_still_closed_first() {
    // Only finished generators are reused: a suspended one's last handle
    // still runs its cleanup (CPython's finalizer), every time.
    use std::cell::Cell;
    use std::rc::Rc;
    let cleanups = Rc::new(Cell::new(0));
    for _ in 0..100 {
        let seen = Rc::clone(&cleanups);
        let g = Generator::new(move |co| {
            let r = co.yield_(Value::None);
            seen.set(seen.get() + 1); // finally:
            r
        });
        assert_eq!(g.next(), Ok(Value::None));
        drop(g);
    }
    assert_eq!(cleanups.get(), 100);
}
