//! Spreading independent per-event work (rendering canonical JSON, parsing and hashing lines)
//! over the machine's cores, in batches that keep memory constant and results in log order.
//! Export and verify spend most of their time on such work; the checks that depend on the
//! previous event stay sequential.

/// Items handled together: large enough that starting threads per batch costs little, small
/// enough that a batch's text stays a few megabytes.
pub(crate) const BATCH: usize = 4096;

/// The number of threads to split a batch over.
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `f` applied to every item, in order, the items split into one contiguous chunk per thread.
/// A panicking `f` is a bug, not an input error: it propagates.
pub(crate) fn map_in_order<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if threads <= 1 || items.len() < 64 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(results) => results,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_order_of_the_items() {
        let items: Vec<u32> = (0..10_000).collect();
        for threads in [1, 2, 3, 8] {
            let doubled = map_in_order(&items, threads, |n| n * 2);
            assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        }
        assert!(map_in_order(&[] as &[u32], 4, |n| *n).is_empty());
    }
}
