//! The allocator's settings.
//!
//! The dataflow hands short-lived containers between operators. By default
//! mimalloc returns freed pages to the kernel after a delay, and the next
//! allocation faults them in and has them zeroed again: on a 1M-row run that
//! was 10,616 page faults and a quarter of the CPU time. Purging is turned
//! off instead; memory is bounded by the sources' flow control, not by the
//! allocator giving pages back.

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys
/// 0.1.49, pinned): the bindings name no constant for it. A test checks the
/// index against the option's documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory in the process instead of returning it to the kernel.
pub fn keep_freed_memory() {
    // SAFETY: mi_option_set only stores an integer option; any value is
    // valid for purge_delay, and -1 means "never purge".
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_index_is_purge_delay() {
        // purge_delay defaults to 1000 ms in mimalloc v3 (src/options.c);
        // the neighbouring options default to 1 and 0.
        // SAFETY: reads an integer option.
        let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert!(
            value == 1000 || value == -1,
            "option {MI_OPTION_PURGE_DELAY} is {value}, not purge_delay"
        );
    }
}
