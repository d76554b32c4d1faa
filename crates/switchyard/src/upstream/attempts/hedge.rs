//! Hedging: when the first deployment has not answered after a delay, a
//! second one is asked too, and the first good answer wins.

use std::time::Duration;

/// The outcome of a hedged attempt. A side that was cancelled (the other
/// answered first) has no result.
pub struct Raced<T, E, H> {
    /// The first request's result.
    pub primary: Option<Result<T, E>>,
    /// The hedge, if one was sent, and its result.
    pub hedge: Option<(H, Option<Result<T, E>>)>,
}

/// Waits for `primary`; if it has not finished after `delay`, calls `hedge`
/// for a second request (it may decline with `None`) and waits for the first
/// success of the two, cancelling the other. A side that fails lets the other
/// run on; when both fail, both results are returned.
pub async fn race<T, E, H, F, G>(
    primary: F,
    delay: Duration,
    hedge: impl FnOnce() -> Option<(H, G)>,
) -> Raced<T, E, H>
where
    F: Future<Output = Result<T, E>>,
    G: Future<Output = Result<T, E>>,
{
    tokio::pin!(primary);
    tokio::select! {
        biased;
        result = &mut primary => {
            return Raced { primary: Some(result), hedge: None };
        }
        () = tokio::time::sleep(delay) => {}
    }
    let Some((side, second)) = hedge() else {
        return Raced {
            primary: Some(primary.await),
            hedge: None,
        };
    };
    tokio::pin!(second);
    tokio::select! {
        biased;
        result = &mut primary => {
            let hedged = if result.is_ok() { None } else { Some(second.await) };
            Raced { primary: Some(result), hedge: Some((side, hedged)) }
        }
        hedged = &mut second => {
            let primary = if hedged.is_ok() { None } else { Some(primary.await) };
            Raced { primary, hedge: Some((side, Some(hedged))) }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn answer(after: u64, ok: bool) -> Result<u64, u64> {
        tokio::time::sleep(Duration::from_millis(after)).await;
        if ok { Ok(after) } else { Err(after) }
    }

    const DELAY: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn a_quick_answer_sends_no_hedge() {
        let raced = race(answer(50, true), DELAY, || Some(((), answer(1, true)))).await;
        assert_eq!(raced.primary, Some(Ok(50)));
        assert!(raced.hedge.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_first_request_loses_to_the_hedge() {
        let raced = race(answer(1000, true), DELAY, || Some(("b", answer(50, true)))).await;
        assert_eq!(raced.primary, None);
        assert_eq!(raced.hedge, Some(("b", Some(Ok(50)))));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_may_still_win() {
        let raced = race(answer(120, true), DELAY, || Some(("b", answer(500, true)))).await;
        assert_eq!(raced.primary, Some(Ok(120)));
        assert_eq!(raced.hedge, Some(("b", None)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_side_lets_the_other_finish() {
        let raced = race(answer(1000, true), DELAY, || Some(("b", answer(10, false)))).await;
        assert_eq!(raced.primary, Some(Ok(1000)));
        assert_eq!(raced.hedge, Some(("b", Some(Err(10)))));
        let both = race(answer(300, false), DELAY, || Some(("b", answer(10, false)))).await;
        assert_eq!(both.primary, Some(Err(300)));
        assert_eq!(both.hedge, Some(("b", Some(Err(10)))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_declined_hedge_waits_for_the_first_request() {
        let declined = || None::<((), std::future::Ready<Result<u64, u64>>)>;
        let raced = race(answer(1000, true), DELAY, declined).await;
        assert_eq!(raced.primary, Some(Ok(1000)));
        assert!(raced.hedge.is_none());
    }
}
