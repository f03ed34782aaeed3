//! Which CPUs `Cores::All` means: the affinity mask, cut down to the cgroup CPU quota.
//!
//! A container limited to 2 CPUs on a 64-core host still sees 64 CPUs in its affinity mask
//! (a CFS quota limits time, not placement). Running 64 shards there would give each one a
//! 30th of a CPU and make every shard wait for its slice. So `Cores::All` takes the allowed
//! CPUs (`sched_getaffinity`) and keeps the first `ceil(quota / period)` of them (at least
//! one), where the quota is the smallest one found for this process's cgroup:
//!
//! - cgroup v2: `cpu.max` (`"<quota> <period>"` or `"max <period>"`) of the process's cgroup
//!   (the `0::<path>` line of `/proc/self/cgroup`) and of each of its ancestors below the
//!   mount at `/sys/fs/cgroup`;
//! - cgroup v1: `cpu.cfs_quota_us` / `cpu.cfs_period_us` (a quota of -1 means none) of the
//!   `cpu` controller's cgroup, under `/sys/fs/cgroup/cpu` (or `cpu,cpuacct`).
//!
//! Inside a container the cgroup path in `/proc/self/cgroup` may name the host's hierarchy
//! while the container sees only its own cgroup at the mount point: when the named directory
//! does not exist, the mount point itself is read.

use std::fs;
use std::path::{Path, PathBuf};

/// Cores a CFS quota allows: `ceil(quota / period)`, at least 1; `None` without a limit.
pub(crate) fn quota_cores(quota: i64, period: u64) -> Option<usize> {
    if quota <= 0 || period == 0 {
        return None;
    }
    let quota = quota as u64;
    let cores = quota.div_ceil(period).max(1);
    Some(usize::try_from(cores).unwrap_or(usize::MAX))
}

/// Parses a cgroup v2 `cpu.max` line: `"max 100000"` is no limit, `"200000 100000"` is 2.
pub(crate) fn parse_cpu_max(s: &str) -> Option<usize> {
    let mut parts = s.split_whitespace();
    let quota = parts.next()?;
    let period = parts.next().map_or(Some(100_000), |p| p.parse::<u64>().ok())?;
    if quota == "max" {
        return None;
    }
    quota_cores(quota.parse().ok()?, period)
}

/// Parses cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` (quota -1: no limit).
pub(crate) fn parse_cfs(quota: &str, period: &str) -> Option<usize> {
    quota_cores(quota.trim().parse().ok()?, period.trim().parse().ok()?)
}

/// The cgroup v2 path (`0::<path>`) in the text of `/proc/self/cgroup`.
pub(crate) fn cgroup_v2_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
}

/// The cgroup v1 path of `controller` (a line `N:ctl1,ctl2:<path>` naming it).
pub(crate) fn cgroup_v1_path<'a>(proc_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let _id = f.next()?;
        let ctls = f.next()?;
        let path = f.next()?;
        ctls.split(',').any(|c| c == controller).then_some(path.trim())
    })
}

/// `root/path` and each of its ancestors down to (not including) `root`, deepest first;
/// just `root` when `path` is `/` or empty.
pub(crate) fn cgroup_dirs(root: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != "..").collect();
    for n in (1..=parts.len()).rev() {
        let mut d = root.to_path_buf();
        d.extend(&parts[..n]);
        dirs.push(d);
    }
    if dirs.is_empty() {
        dirs.push(root.to_path_buf());
    }
    dirs
}

fn min_opt(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn v2_quota(proc_cgroup: &str) -> Option<usize> {
    let root = Path::new("/sys/fs/cgroup");
    let path = cgroup_v2_path(proc_cgroup)?;
    let mut dirs = cgroup_dirs(root, path);
    if !dirs.first().is_some_and(|d| d.is_dir()) {
        // A cgroup namespace shows the container's own cgroup at the mount point.
        dirs = vec![root.to_path_buf()];
    }
    dirs.iter()
        .filter_map(|d| fs::read_to_string(d.join("cpu.max")).ok())
        .fold(None, |acc, s| min_opt(acc, parse_cpu_max(&s)))
}

fn v1_quota(proc_cgroup: &str) -> Option<usize> {
    let path = cgroup_v1_path(proc_cgroup, "cpu")?;
    for mount in [
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/cpuacct,cpu",
    ] {
        let root = Path::new(mount);
        if !root.is_dir() {
            continue;
        }
        let mut dirs = cgroup_dirs(root, path);
        if !dirs.first().is_some_and(|d| d.is_dir()) {
            dirs = vec![root.to_path_buf()];
        }
        return dirs
            .iter()
            .filter_map(|d| {
                let q = fs::read_to_string(d.join("cpu.cfs_quota_us")).ok()?;
                let p = fs::read_to_string(d.join("cpu.cfs_period_us")).ok()?;
                Some(parse_cfs(&q, &p))
            })
            .fold(None, min_opt);
    }
    None
}

/// The CPU quota of this process's cgroup in whole cores (rounded up), `None` if unlimited
/// or unknown.
pub(crate) fn cgroup_cpu_quota() -> Option<usize> {
    let proc_cgroup = fs::read_to_string("/proc/self/cgroup").ok()?;
    min_opt(v2_quota(&proc_cgroup), v1_quota(&proc_cgroup))
}

/// The cores [`Cores::All`](crate::Cores::All) takes: the first `quota` of `allowed`.
pub(crate) fn all_cores(allowed: &[usize], quota: Option<usize>) -> Vec<usize> {
    let n = quota.map_or(allowed.len(), |q| q.clamp(1, allowed.len().max(1)));
    allowed[..n.min(allowed.len())].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_lines() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("max"), None);
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("150000 100000"), Some(2), "a fraction rounds up");
        assert_eq!(parse_cpu_max("50000 100000"), Some(1), "at least one core");
        assert_eq!(parse_cpu_max("1000 100000"), Some(1));
        assert_eq!(parse_cpu_max("400000 50000"), Some(8));
        assert_eq!(parse_cpu_max("100000"), Some(1), "the period defaults to 100 ms");
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_cpu_max("garbage 100000"), None);
        assert_eq!(parse_cpu_max("100000 0"), None);
    }

    #[test]
    fn cfs_files() {
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs("300000\n", "100000\n"), Some(3));
        assert_eq!(parse_cfs("250000", "100000"), Some(3));
        assert_eq!(parse_cfs("x", "100000"), None);
    }

    #[test]
    fn proc_self_cgroup_paths() {
        let v2 = "0::/system.slice/app.service\n";
        assert_eq!(cgroup_v2_path(v2), Some("/system.slice/app.service"));
        assert_eq!(cgroup_v1_path(v2, "cpu"), None);
        let hybrid = "9:name=systemd:/\n4:memory:/x\n2:cpuacct:/\n1:cpu:/docker/abc\n0::/\n";
        assert_eq!(cgroup_v1_path(hybrid, "cpu"), Some("/docker/abc"));
        assert_eq!(cgroup_v2_path(hybrid), Some("/"));
        let joined = "3:cpu,cpuacct:/kubepods/pod1/c2\n";
        assert_eq!(cgroup_v1_path(joined, "cpu"), Some("/kubepods/pod1/c2"));
        assert_eq!(cgroup_v1_path(joined, "cpuset"), None);
    }

    #[test]
    fn cgroup_dirs_walk_up_to_the_mount() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(cgroup_dirs(root, "/a/b"), vec![root.join("a/b"), root.join("a")]);
        assert_eq!(cgroup_dirs(root, "/"), vec![root.to_path_buf()]);
        assert_eq!(cgroup_dirs(root, "/../x"), vec![root.join("x")]);
    }

    #[test]
    fn all_cores_takes_the_quota_from_the_allowed_set() {
        let allowed = [0, 2, 4, 6];
        assert_eq!(all_cores(&allowed, None), vec![0, 2, 4, 6]);
        assert_eq!(all_cores(&allowed, Some(2)), vec![0, 2]);
        assert_eq!(all_cores(&allowed, Some(64)), vec![0, 2, 4, 6]);
        assert_eq!(all_cores(&allowed, Some(0)), vec![0]);
    }
}
