// Planning the removal of backups without breaking a chain (pure; docs/prune.md).
//
// Terms:
//   heir     a retained, complete backup whose parent is being removed. It inherits, per disk
//            and chunk index, the newest row of its removed ancestors that it does not record
//            itself ("merge forward"), so it resolves to exactly the same content as before.
//   sources  the removed ancestors of an heir, nearest first, up to its nearest retained
//            ancestor (its new parent) or past the chain's full (then the heir becomes the
//            full: level 'full', no parent).
//   blocked  a requested removal that cannot be done safely, with the reason; the caller
//            keeps that backup. Blocking one removal can change what others need, so the
//            plan is recomputed until nothing new is blocked.
//
// Why merging preserves content: a chain resolves, per chunk index, to the row of the newest
// member that recorded it (chain.ts). Replacing the consecutive members S_k..S_1, H of a
// chain by one member H' holding, per index, the row of the newest of them that has one,
// leaves every later member's resolution unchanged too: H's descendants see H' where they
// saw S_k..S_1, H, and the same rows win. Rows are copied whole (also past H's disk size: a
// descendant whose disk grew again may still read them).
import { PullbackError } from '../errors.js';
import type { BackupLevel, BackupStatus } from './types.js';

export interface RemovalNode {
  id: string;
  parentId: string | null;
  level: BackupLevel;
  status: BackupStatus;
  /** Disk names of the backup. */
  disks: readonly string[];
}

export interface Merge {
  heir: string;
  /** Removed ancestors whose rows the heir inherits, nearest first. */
  sources: string[];
  /** The heir's parent after the removal; null when it becomes the full of its chain. */
  newParent: string | null;
}

export interface RemovalPlan {
  /** Backups that will be removed, in input order. */
  remove: string[];
  merges: Merge[];
  /** Requested removals that must not happen, with why. */
  blocked: Array<{ id: string; reason: string }>;
}

export function planRemoval(nodes: readonly RemovalNode[], requested: Iterable<string>): RemovalPlan {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const children = new Map<string, RemovalNode[]>();
  for (const n of nodes) {
    if (n.parentId === null) continue;
    const list = children.get(n.parentId) ?? [];
    list.push(n);
    children.set(n.parentId, list);
  }
  const order: string[] = [];
  for (const id of requested) {
    if (!byId.has(id)) throw new PullbackError('BACKUP_NOT_FOUND', `cannot remove backup ${id}: it is not in the repository`);
    if (!order.includes(id)) order.push(id);
  }
  const remove = new Set(order);
  const blocked = new Map<string, string>();
  const block = (id: string, reason: string): void => {
    if (blocked.has(id)) return;
    blocked.set(id, reason);
    remove.delete(id);
  };

  for (;;) {
    const before = blocked.size;
    for (const id of [...remove]) {
      const n = byId.get(id) as RemovalNode;
      if (n.status === 'running') {
        block(id, 'running');
        continue;
      }
      for (const c of children.get(id) ?? []) {
        if (remove.has(c.id) || c.status === 'failed') continue;
        if (c.status === 'running') block(id, `parent of running backup ${c.id}`);
        else if (n.status !== 'complete') block(id, `backup ${c.id} builds on it (its chain is broken: run \`pullback check\`)`);
      }
    }
    const merges = mergesFor(nodes, byId, remove);
    for (const m of merges) {
      const heir = byId.get(m.heir) as RemovalNode;
      for (const s of m.sources) {
        const src = byId.get(s) as RemovalNode;
        if (src.status !== 'complete') {
          block(s, `backup ${heir.id} builds on it (its chain is broken: run \`pullback check\`)`);
          continue;
        }
        const lost = src.disks.filter((d) => !heir.disks.includes(d));
        if (lost.length > 0) {
          block(s, `its disk ${lost.join(', ')} is not in backup ${heir.id}, which builds on it (cannot merge forward)`);
        }
      }
    }
    if (blocked.size === before) {
      return {
        remove: order.filter((id) => remove.has(id)),
        merges,
        blocked: [...blocked].map(([id, reason]) => ({ id, reason })),
      };
    }
  }
}

function mergesFor(nodes: readonly RemovalNode[], byId: Map<string, RemovalNode>, remove: Set<string>): Merge[] {
  const out: Merge[] = [];
  for (const n of nodes) {
    if (remove.has(n.id) || n.status !== 'complete' || n.level === 'full') continue;
    const sources: string[] = [];
    let p = n.parentId;
    while (p !== null && remove.has(p)) {
      const src = byId.get(p) as RemovalNode;
      sources.push(p);
      p = src.level === 'full' ? null : src.parentId;
    }
    if (sources.length > 0) out.push({ heir: n.id, sources, newParent: p });
  }
  return out;
}
