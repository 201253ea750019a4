//! Turn-based concurrency: one call at a time per actor, in arrival order, with reentrancy.
//!
//! A call holds the actor's turn for as long as the app works on it. With reentrancy enabled,
//! a call that carries the reentrancy id of the chain holding the turn (the app passed the
//! `Dapr-Reentrancy-Id` header on) enters at once, one level deeper, up to the type's
//! `maxStackDepth`; any other call waits for the whole chain to finish. Waiting calls are
//! bounded per actor: past [`MAX_WAITING`] the caller is told to retry.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Calls that may wait for one actor's turn at once.
pub const MAX_WAITING: usize = 4096;

/// The turn of one actor.
#[derive(Debug)]
pub struct Turns {
    gate: Arc<Semaphore>,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// The reentrancy id of the chain holding the turn (empty: a call without reentrancy).
    chain: Option<String>,
    depth: u32,
    permit: Option<OwnedSemaphorePermit>,
    waiting: usize,
    /// Deactivation began: calls not yet holding the turn are refused.
    closing: bool,
    closed: bool,
}

/// One waiting call, counted for as long as it waits (also when it is given up).
struct Waiting<'a>(&'a Mutex<State>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        st.waiting = st.waiting.saturating_sub(1);
    }
}

/// Why a call could not take the turn.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    /// The reentrant chain is deeper than allowed.
    #[error("maximum stack depth exceeded")]
    TooDeep,
    /// Too many calls are already waiting for this actor.
    #[error("too many calls are waiting for this actor")]
    Busy,
    /// The actor was deactivated while the call waited.
    #[error("the actor was deactivated")]
    Closed,
}

/// Holding the turn (or one level of a reentrant chain); dropping it gives the level back.
#[derive(Debug)]
pub struct Turn {
    state: Arc<Mutex<State>>,
}

impl Default for Turns {
    fn default() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(1)),
            state: Arc::default(),
        }
    }
}

impl Turns {
    /// Takes the turn. `chain` is the call's reentrancy id when reentrancy is enabled for the
    /// type, and `max_depth` the type's `maxStackDepth`.
    pub async fn enter(&self, chain: Option<&str>, max_depth: u32) -> Result<Turn, TurnError> {
        {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if st.closed {
                return Err(TurnError::Closed);
            }
            // A reentrant call is part of the turn under way, which may finish even while the
            // actor is being deactivated.
            if let (Some(c), Some(holding)) = (chain, st.chain.as_deref())
                && c == holding
                && st.depth > 0
            {
                if st.depth >= max_depth {
                    return Err(TurnError::TooDeep);
                }
                st.depth += 1;
                return Ok(Turn {
                    state: self.state.clone(),
                });
            }
            if st.closing {
                return Err(TurnError::Closed);
            }
            if st.waiting >= MAX_WAITING {
                return Err(TurnError::Busy);
            }
            st.waiting += 1;
        }
        let waiting = Waiting(&self.state);
        let permit = self.gate.clone().acquire_owned().await;
        drop(waiting);
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Ok(permit) = permit else {
            return Err(TurnError::Closed);
        };
        if st.closed || st.closing {
            return Err(TurnError::Closed);
        }
        st.chain = Some(chain.unwrap_or_default().to_owned());
        st.depth = 1;
        st.permit = Some(permit);
        Ok(Turn {
            state: self.state.clone(),
        })
    }

    /// Whether a call holds the turn or waits for it.
    pub fn busy(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.depth > 0 || st.waiting > 0
    }

    /// Refuses every call that does not hold the turn yet (waiting ones get
    /// [`TurnError::Closed`]), then waits for the call under way, if any, to finish: the actor is
    /// being deactivated.
    pub async fn close(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closing = true;
        let permit = self.gate.clone().acquire_owned().await;
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.closed = true;
        self.gate.close();
        drop(permit);
    }

    /// Refuses every later call at once, without waiting for the one under way.
    pub fn close_now(&self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.closing = true;
        st.closed = true;
        drop(st);
        self.gate.close();
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.depth = st.depth.saturating_sub(1);
        if st.depth == 0 {
            st.chain = None;
            st.permit = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_call_at_a_time_in_arrival_order() {
        let turns = Arc::new(Turns::default());
        let first = turns.enter(None, 32).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for i in 0..3 {
            let (turns, order) = (turns.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _t = turns.enter(None, 32).await.unwrap();
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            order.lock().unwrap().is_empty(),
            "nobody enters a held turn"
        );
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
        assert!(!turns.busy());
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_chain_reenters_up_to_its_depth() {
        let turns = Turns::default();
        let a = turns.enter(Some("chain-1"), 3).await.unwrap();
        let b = turns.enter(Some("chain-1"), 3).await.unwrap();
        let c = turns.enter(Some("chain-1"), 3).await.unwrap();
        assert_eq!(
            turns.enter(Some("chain-1"), 3).await.unwrap_err(),
            TurnError::TooDeep
        );
        // Another chain waits for the whole first one.
        let other = tokio::time::timeout(Duration::from_secs(1), turns.enter(Some("chain-2"), 3));
        assert!(other.await.is_err(), "another chain entered a held turn");
        drop((c, b));
        let still = tokio::time::timeout(Duration::from_secs(1), turns.enter(None, 3));
        assert!(
            still.await.is_err(),
            "entered while the chain's first call runs"
        );
        drop(a);
        let _t = turns.enter(Some("chain-2"), 3).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_without_reentrancy_never_reenters() {
        let turns = Turns::default();
        let _a = turns.enter(None, 32).await.unwrap();
        let again = tokio::time::timeout(Duration::from_secs(1), turns.enter(None, 32));
        assert!(again.await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn closing_waits_for_the_call_under_way_and_refuses_the_rest() {
        let turns = Arc::new(Turns::default());
        let under_way = turns.enter(None, 32).await.unwrap();
        let waiter = {
            let turns = turns.clone();
            tokio::spawn(async move { turns.enter(None, 32).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        let closing = {
            let turns = turns.clone();
            tokio::spawn(async move { turns.close().await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!closing.is_finished(), "close waits for the call under way");
        drop(under_way);
        // Waiting when the close began: refused, not run after it.
        assert_eq!(waiter.await.unwrap(), Err(TurnError::Closed));
        closing.await.unwrap();
        assert_eq!(turns.enter(None, 32).await.unwrap_err(), TurnError::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_waiting_is_not_counted_any_more() {
        let turns = Arc::new(Turns::default());
        let held = turns.enter(None, 32).await.unwrap();
        for _ in 0..10 {
            let gave_up = tokio::time::timeout(Duration::from_millis(10), turns.enter(None, 32));
            assert!(gave_up.await.is_err());
        }
        drop(held);
        assert!(!turns.busy(), "calls that gave up still count as waiting");
    }
}
