//! Hands back to the kernel the pages of the program that only the start-up
//! needed, so the idle supervisor's resident memory stays small.

use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;

use crate::debug;

/// One mapping of the executable, from `/proc/self/smaps`.
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    /// Copy-on-write pages the process changed, such as relocated data.
    anonymous_kb: u64,
}

/// Drops the resident pages of the executable's mappings that hold only
/// file contents (code and read-only data). The kernel reads them back from
/// the page cache if they are used again. Mappings with changed pages are
/// left alone, because dropping them would undo the changes (relocations).
/// Does nothing where `/proc` is not mounted.
pub fn release_startup_pages() {
    let Ok(executable) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut released = 0;
    for mapping in executable_mappings(&smaps, &executable) {
        if mapping.writable || mapping.anonymous_kb > 0 {
            continue;
        }
        // SAFETY: the range is a whole mapping of this process's own
        // executable that contains no changed pages, so MADV_DONTNEED only
        // drops pages the kernel can fault back in from the file unchanged.
        let result = unsafe {
            nix::libc::madvise(mapping.start as *mut nix::libc::c_void, mapping.end - mapping.start, nix::libc::MADV_DONTNEED)
        };
        if result == 0 {
            released += mapping.end - mapping.start;
        }
    }
    debug!("released {} KiB of start-up pages", released / 1024);
}

fn executable_mappings(smaps: &str, executable: &Path) -> Vec<Mapping> {
    let executable = executable.to_string_lossy();
    let mut mappings: Vec<Mapping> = Vec::new();
    let mut in_executable = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').filter(|(start, _)| start.bytes().all(|b| b.is_ascii_hexdigit())) {
            let permissions = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            in_executable = path == executable;
            let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
                in_executable = false;
                continue;
            };
            if in_executable {
                mappings.push(Mapping { start, end, writable: permissions.contains('w'), anonymous_kb: 0 });
            }
        } else if in_executable && first == "Anonymous:" {
            if let (Some(mapping), Some(kb)) = (mappings.last_mut(), fields.next().and_then(|kb| kb.parse().ok())) {
                mapping.anonymous_kb = kb;
            }
        }
    }
    mappings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_parsing_keeps_clean_mappings() {
        let smaps = "\
5555000-5556000 r--p 00000000 fd:01 42 /bin/x
Anonymous:             0 kB
5556000-5559000 r-xp 00001000 fd:01 42 /bin/x
Anonymous:             0 kB
5559000-555a000 r--p 00004000 fd:01 42 /bin/x
Anonymous:             4 kB
555a000-555b000 rw-p 00005000 fd:01 42 /bin/x
Anonymous:             4 kB
7f00000-7f01000 r-xp 00000000 fd:01 43 /lib/other
Anonymous:             0 kB
";
        let mappings = executable_mappings(smaps, &PathBuf::from("/bin/x"));
        assert_eq!(mappings.len(), 4);
        let clean: Vec<usize> = mappings.iter().filter(|m| !m.writable && m.anonymous_kb == 0).map(|m| m.start).collect();
        assert_eq!(clean, vec![0x5555000, 0x5556000]);
    }
}
