//! B1's counts that do not depend on the machine's noise: instructions executed (Callgrind) and heap
//! blocks allocated (DHAT) per new record, for Outpost and the bare insert.

use super::{path_str, remove_db, Bench};
use crate::procs::{Result, Valgrind};

impl Bench<'_> {
    /// B1's instructions (Callgrind) and heap allocations (DHAT) per new record, for Outpost and
    /// the bare insert: each writes 2k and 12k records, and each again makes them without writing
    /// (`--dry`); the difference of the differences over 10k records is the write path alone. A
    /// count is the same from run to run on a noisy machine, where times are not.
    pub(super) fn b1_instructions(&mut self) -> Result<String> {
        let (small, large) = (2_000u64, 12_000u64);
        let mut per_record = Vec::new();
        for (tool, what) in [(Valgrind::Instructions, "ir"), (Valgrind::Allocations, "allocations")] {
            for worker in ["write", "reference"] {
                let Some(n) = self.per_record(tool, worker, (small, large))? else {
                    return Ok("Callgrind and DHAT not measured (no valgrind installed)".into());
                };
                self.sample(&format!("B1.valgrind.{worker}.{what}_per_record"), n);
                per_record.push(n);
            }
        }
        Ok(format!(
            "per new record, making the records subtracted: instructions (Callgrind) outpost {:.1}k, bare rusqlite \
             {:.1}k; heap allocations (DHAT) outpost {:.0}, bare rusqlite {:.0}",
            per_record[0] / 1e3,
            per_record[1] / 1e3,
            per_record[2],
            per_record[3]
        ))
    }

    /// What `tool` counts per record of `worker`'s write path (see [`Bench::b1_instructions`]).
    fn per_record(&mut self, tool: Valgrind, worker: &str, (small, large): (u64, u64)) -> Result<Option<f64>> {
        let mut counts = Vec::new();
        for (n, dry) in [(small, false), (large, false), (small, true), (large, true)] {
            let file = self.cfg.work.join(format!("b1-callgrind-{worker}-{n}-{dry}.outpost"));
            let mut args = Self::write_args(&path_str(&file), "b1", true, 0, n, 0);
            args[0] = worker.into();
            if dry {
                args.push("--dry".into());
            }
            let Some(count) = self.tools().valgrind(tool, &args, &self.cfg.work)? else { return Ok(None) };
            remove_db(&file);
            counts.push(count as f64);
        }
        Ok(Some(((counts[1] - counts[0]) - (counts[3] - counts[2])) / (large - small) as f64))
    }
}
