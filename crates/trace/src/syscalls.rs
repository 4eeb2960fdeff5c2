//! System call names, by number, for the architecture isol is built for: the table of the
//! `syscalls` crate (generated from the kernel's own tables). A lookup is a bounds check
//! and a `match`: safe in a signal handler (strict mode names a trapped call in one).

/// The name of system call `nr`, if the table knows it.
pub fn name(nr: i64) -> Option<&'static str> {
    let nr = usize::try_from(nr).ok()?;
    ::syscalls::Sysno::new(nr).map(|s| s.name())
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_numbers_have_names() {
        assert_eq!(super::name(0), Some("read"));
        assert_eq!(super::name(39), Some("getpid"));
        assert_eq!(super::name(231), Some("exit_group"));
        assert_eq!(super::name(-1), None);
        assert_eq!(super::name(100_000), None);
    }
}
