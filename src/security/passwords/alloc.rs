//! glibc allocator tuning for the hashing threads' large buffers, so that memory they give back
//! really leaves the process (see `map_large_allocations`); no-ops elsewhere.

/// Allocations from this size up are mapped on their own, so freeing one unmaps it.
const MAP_FROM_BYTES: i32 = 4 << 20;

/// Makes glibc map every large allocation on its own, once per process. By default it raises
/// its mapping threshold to the size of a mapped block once that block is freed: a first
/// hash's 19 MiB, once freed, sends the hashing threads' buffers into arenas, and a
/// buffer freed at the top of a thread's arena stays resident (`malloc_trim` shrinks only the
/// main arena's top). The bench saw the server keep one or both 19 MiB buffers after the idle
/// release while the gauge said 0. A fixed threshold turns that adjustment off.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // FFI into glibc; see SAFETY below.
pub(super) fn map_large_allocations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt only changes the allocator's own tuning; called before any hashing
        // buffer exists, and glibc serialises it with allocation.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MAP_FROM_BYTES);
        }
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn map_large_allocations() {}

/// Asks glibc to return other freed memory to the system as well (the buffers themselves are
/// unmapped when freed, see [`map_large_allocations`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // FFI into glibc; see SAFETY below.
pub(super) fn trim_heap() {
    // SAFETY: malloc_trim only walks and shrinks the allocator's own arenas; it takes no
    // pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn trim_heap() {}
