//! CPU time of threads and processes from `/proc` (`stat`: user and system time), for
//! `--traffic netns`: where the CPU of a run went (each guest's iperf3 and netfront, the
//! backend's threads), so that a shortfall can be located.

use std::io::{self, Read};
use std::process::{Child, Output};
use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`: 100 on every Linux
/// architecture this project builds for; the kernel converts to it for user space).
const USER_HZ: u64 = 100;

/// User and system CPU time, s.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuTimes {
    /// User time, s.
    pub user_s: f64,
    /// System (kernel) time, s.
    pub sys_s: f64,
}

impl CpuTimes {
    /// User + system, s.
    pub fn total_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// The fields of a `stat` line after the command name: `(state, CpuTimes)`.
fn parse_stat(line: &str) -> io::Result<(char, CpuTimes)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("stat line {line:?}"));
    // The command name is in parentheses and may hold spaces or parentheses itself.
    let rest = &line[line.rfind(')').ok_or_else(bad)? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first().and_then(|s| s.chars().next()).ok_or_else(bad)?;
    // Fields 14 and 15 of stat(5) are utime and stime; `f[0]` is field 3.
    let tick = |i: usize| -> io::Result<f64> {
        let t: u64 = f.get(i).ok_or_else(bad)?.parse().map_err(|_| bad())?;
        Ok(t as f64 / USER_HZ as f64)
    };
    Ok((
        state,
        CpuTimes {
            user_s: tick(11)?,
            sys_s: tick(12)?,
        },
    ))
}

/// The calling thread's CPU times (`/proc/thread-self/stat`).
pub fn this_thread() -> io::Result<CpuTimes> {
    Ok(parse_stat(&std::fs::read_to_string("/proc/thread-self/stat")?)?.1)
}

/// Every thread of this process whose name (`comm`) is `name`: the sum of their times.
pub fn threads_named(name: &str) -> io::Result<CpuTimes> {
    let mut sum = CpuTimes::default();
    for e in std::fs::read_dir("/proc/self/task")? {
        let dir = e?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        // A thread may end between the listing and this read.
        if let Ok(s) = std::fs::read_to_string(dir.join("stat")) {
            let t = parse_stat(&s)?.1;
            sum.user_s += t.user_s;
            sum.sys_s += t.sys_s;
        }
    }
    Ok(sum)
}

/// Whether `child` has exited, without reaping it (so that [`wait_with_cpu`] can still
/// read its times): its `stat` says zombie, or is gone.
pub fn has_exited(child: &Child) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", child.id())) {
        Ok(s) => parse_stat(&s).is_ok_and(|(state, _)| state == 'Z' || state == 'X'),
        Err(_) => true,
    }
}

/// Waits for `child` as [`Child::wait_with_output`] does, and returns the CPU times of
/// its process too: read once it has exited and before it is reaped (a zombie's `stat`
/// still holds its times, all its threads included).
pub fn wait_with_cpu(mut child: Child) -> io::Result<(Output, CpuTimes)> {
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let stat = format!("/proc/{}/stat", child.id());
    let mut cpu = CpuTimes::default();
    // Until it is a zombie; or gone: reaped by someone else already (its times are
    // lost, the last seen kept).
    while let Ok(line) = std::fs::read_to_string(&stat) {
        let (state, t) = parse_stat(&line)?;
        cpu = if t.total_s() >= cpu.total_s() { t } else { cpu };
        if state == 'Z' || state == 'X' {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait()?;
    let join = |h: std::thread::JoinHandle<Vec<u8>>| {
        h.join()
            .map_err(|_| io::Error::other("output reader panicked"))
    };
    Ok((
        Output {
            status,
            stdout: join(out)?,
            stderr: join(err)?,
        },
        cpu,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parentheses_in_the_name() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 5 0 0";
        let (state, t) = parse_stat(line).unwrap();
        assert_eq!(state, 'S');
        assert_eq!(t.user_s, 2.5);
        assert_eq!(t.sys_s, 0.75);
        assert!(parse_stat("42 (x) S 1").is_err());
    }

    /// A child that burns CPU for a while: its time is seen after it exited, and its
    /// output is kept whole.
    #[test]
    fn a_childs_cpu_time_and_output() {
        let child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo done; echo err >&2",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        assert!(!has_exited(&child));
        let (out, cpu) = wait_with_cpu(child).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"done\n");
        assert_eq!(out.stderr, b"err\n");
        assert!(cpu.total_s() > 0.0, "{cpu:?}");
    }

    #[test]
    fn this_threads_time_grows_with_work() {
        let t0 = this_thread().unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let t1 = this_thread().unwrap();
        assert!(t1.total_s() > t0.total_s(), "{t0:?} {t1:?}");
        assert!(threads_named("no-such-thread-x").unwrap().total_s() == 0.0);
    }
}
