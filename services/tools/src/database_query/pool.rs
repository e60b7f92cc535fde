//! A small pool of read-only connections shared fairly between clients:
//! each client (a token's `sub`) holds at most `per_client` connections at
//! once; a query past its client's share, or finding every connection busy,
//! waits briefly (never past its caller's deadline), then is refused.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::caller::Caller;
use crate::tool::ToolError;

/// How often a waiting query looks whether its caller went away.
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// How many waiting queries the pool allows per connection; more are refused at once.
const WAITERS_PER_CONNECTION: usize = 4;

/// One read-only connection and what its authorizer last refused.
#[derive(Debug)]
pub(crate) struct Pooled {
    /// The connection.
    pub(crate) connection: Connection,
    /// What the authorizer last refused, to explain the refusal.
    pub(crate) last_denial: Arc<Mutex<Option<String>>>,
}

/// The idle connections and who holds the others.
#[derive(Debug)]
struct State {
    /// Connections nobody holds.
    idle: Vec<Pooled>,
    /// How many connections each client holds (no entry: none).
    held: HashMap<String, usize>,
    /// How many queries wait for a connection.
    waiting: usize,
}

/// The pool.
#[derive(Debug)]
pub(crate) struct Pool {
    state: Mutex<State>,
    /// Signalled when a connection comes back.
    returned: Condvar,
    /// How many connections there are.
    size: usize,
    /// How many one client may hold at once.
    per_client: usize,
    /// How long a query waits for a connection.
    queue_wait: Duration,
}

/// A connection held by one client; back in the pool when dropped.
#[derive(Debug)]
pub(crate) struct Lease<'p> {
    pool: &'p Pool,
    client: String,
    pooled: Option<Pooled>,
}

impl Pool {
    /// A pool of `connections`, each client holding at most `per_client`,
    /// a query waiting at most `queue_wait` for one.
    pub(crate) fn new(connections: Vec<Pooled>, per_client: usize, queue_wait: Duration) -> Self {
        Self {
            size: connections.len(),
            state: Mutex::new(State {
                idle: connections,
                held: HashMap::new(),
                waiting: 0,
            }),
            returned: Condvar::new(),
            per_client,
            queue_wait,
        }
    }

    /// How many connections nobody holds (for tests and diagnostics).
    pub(crate) fn idle(&self) -> usize {
        self.lock().idle.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection for `caller`, once its client is within its share and
    /// one is free; refused when the wait ends first.
    pub(crate) fn checkout(&self, caller: &Caller) -> Result<Lease<'_>, ToolError> {
        let client = caller.client();
        let wait_until = Instant::now().checked_add(self.queue_wait);
        let mut state = self.lock();
        let mut counted = false;
        let outcome = loop {
            let held = state.held.get(client).copied().unwrap_or(0);
            if held < self.per_client
                && let Some(pooled) = state.idle.pop()
            {
                *state.held.entry(client.to_owned()).or_insert(0) += 1;
                break Ok(Lease {
                    pool: self,
                    client: client.to_owned(),
                    pooled: Some(pooled),
                });
            }
            if caller.is_cancelled() {
                break Err(ToolError::Cancelled(
                    "the caller went away while the query waited for a connection".to_owned(),
                ));
            }
            if caller.deadline_passed() {
                break Err(ToolError::DeadlineExceeded(
                    "the caller's deadline passed while the query waited for a connection"
                        .to_owned(),
                ));
            }
            let now = Instant::now();
            let out_of_time = wait_until.is_some_and(|until| now >= until);
            let queue_full = !counted && state.waiting >= self.size * WAITERS_PER_CONNECTION;
            if out_of_time || queue_full {
                break Err(self.busy(client, held, queue_full));
            }
            if !counted {
                state.waiting += 1;
                counted = true;
            }
            let slice = wait_until.map_or(WAIT_SLICE, |until| (until - now).min(WAIT_SLICE));
            state = self
                .returned
                .wait_timeout(state, slice)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        if counted {
            state.waiting -= 1;
        }
        outcome
    }

    /// Why `client`, holding `held` connections, gets none.
    fn busy(&self, client: &str, held: usize, queue_full: bool) -> ToolError {
        let limit = self.per_client;
        ToolError::ResourceExhausted(if held >= limit {
            format!(
                "client {client:?} already runs {held} queries, the most one client may run at \
                 once; none of them finished within {:?}: send fewer queries at a time",
                self.queue_wait
            )
        } else if queue_full {
            format!(
                "all {} database connections are busy and too many queries wait; try again shortly",
                self.size
            )
        } else {
            format!(
                "all {} database connections stayed busy for {:?}; try again shortly",
                self.size, self.queue_wait
            )
        })
    }

    /// Takes `pooled` back from `client`.
    fn give_back(&self, client: &str, pooled: Pooled) {
        let mut state = self.lock();
        state.idle.push(pooled);
        if let Some(held) = state.held.get_mut(client) {
            *held -= 1;
            if *held == 0 {
                state.held.remove(client);
            }
        }
        drop(state);
        self.returned.notify_all();
    }
}

impl Deref for Lease<'_> {
    type Target = Pooled;

    fn deref(&self) -> &Pooled {
        self.pooled
            .as_ref()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Pooled {
        self.pooled
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(pooled) = self.pooled.take() {
            self.pool.give_back(&self.client, pooled);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    fn pool(size: usize, per_client: usize, queue_wait: Duration) -> Pool {
        let connections = (0..size)
            .map(|_| Pooled {
                connection: Connection::open_in_memory().unwrap(),
                last_denial: Arc::default(),
            })
            .collect();
        Pool::new(connections, per_client, queue_wait)
    }

    /// A caller who waits for ever (its guard is never dropped).
    fn caller(client: &str) -> Caller {
        let (caller, guard) = Caller::new(client, None);
        std::mem::forget(guard);
        caller
    }

    #[test]
    fn a_client_past_its_share_waits_then_is_refused_while_another_is_served() {
        let pool = pool(3, 2, Duration::from_millis(50));
        let a = caller("a");
        let first = pool.checkout(&a).unwrap();
        let _second = pool.checkout(&a).unwrap();
        let err = pool.checkout(&a).unwrap_err();
        assert!(
            matches!(&err, ToolError::ResourceExhausted(m) if m.contains("already runs 2 queries")),
            "{err:?}"
        );
        let b = pool.checkout(&caller("b")).unwrap();
        assert_eq!(pool.idle(), 0);
        drop(first);
        drop(b);
        assert_eq!(pool.idle(), 2);
        assert!(pool.checkout(&a).is_ok());
    }

    #[test]
    fn a_full_pool_hands_over_a_returned_connection_to_a_waiter() {
        let pool = Arc::new(pool(1, 1, Duration::from_secs(30)));
        let held = pool.checkout(&caller("a")).unwrap();
        let waiter = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || pool.checkout(&caller("b")).map(drop).is_ok())
        };
        thread::sleep(Duration::from_millis(50));
        drop(held);
        assert!(waiter.join().unwrap());
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn a_full_pool_refuses_after_the_wait_naming_the_pool() {
        let pool = pool(1, 1, Duration::from_millis(30));
        let _held = pool.checkout(&caller("a")).unwrap();
        let err = pool.checkout(&caller("b")).unwrap_err();
        assert!(
            matches!(&err, ToolError::ResourceExhausted(m) if m.contains("all 1 database connections")),
            "{err:?}"
        );
    }

    #[test]
    fn a_waiter_whose_caller_leaves_or_runs_out_of_time_stops_waiting() {
        let pool = pool(1, 1, Duration::from_secs(30));
        let _held = pool.checkout(&caller("a")).unwrap();
        let (gone, guard) = Caller::new("b", None);
        drop(guard);
        assert!(matches!(pool.checkout(&gone), Err(ToolError::Cancelled(_))));
        let (late, _guard) = Caller::new("c", Some(Instant::now() + Duration::from_millis(30)));
        assert!(matches!(
            pool.checkout(&late),
            Err(ToolError::DeadlineExceeded(_))
        ));
    }
}
