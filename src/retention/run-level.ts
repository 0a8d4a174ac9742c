// The level policy of the nightly run (pure): when to force a full backup instead of letting
// the backup engine decide ('auto': incremental when the newest complete backup's checkpoint
// is usable, else full).
//
//   chain                 the newest complete backup and its ancestors, full first
//   full_every_days N     full when the chain's full is N days old or older
//   full_after_incrementals N  full when the chain already has N incrementals
//
// Both look at the chain as it is in the repository now. Prune changes it: removing a
// chain's full makes its first retained incremental the full (merge forward), so with a
// retention shorter than full_every_days the chain's full keeps moving forward and a forced
// full may never come. docs/nightly.md says so; keep the retention longer than the interval.
export interface LevelPolicy {
  fullEveryDays?: number;
  fullAfterIncrementals?: number;
}

export interface ChainMember {
  id: string;
  time: Date;
  level: 'full' | 'incremental';
}

export interface LevelChoice {
  level: 'auto' | 'full';
  reason: string;
}

const DAY_MS = 86_400_000;

export function chooseLevel(chain: readonly ChainMember[], policy: LevelPolicy, now: Date): LevelChoice {
  const full = chain[0];
  if (full === undefined) return { level: 'auto', reason: 'no previous backup' };
  const incrementals = chain.length - 1;
  if (policy.fullAfterIncrementals !== undefined && incrementals >= policy.fullAfterIncrementals) {
    return { level: 'full', reason: `the chain has ${incrementals} incremental(s) (full_after_incrementals = ${policy.fullAfterIncrementals})` };
  }
  const ageDays = (now.getTime() - full.time.getTime()) / DAY_MS;
  if (policy.fullEveryDays !== undefined && ageDays >= policy.fullEveryDays) {
    return { level: 'full', reason: `the chain's full ${full.id} is ${Math.floor(ageDays)} day(s) old (full_every_days = ${policy.fullEveryDays})` };
  }
  return { level: 'auto', reason: `chain of ${chain.length} backup(s) since ${full.id}` };
}
