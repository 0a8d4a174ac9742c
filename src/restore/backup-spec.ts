// Which backup `--backup ID|latest` of `--domain NAME` means. An explicit id must belong to
// the named domain (restoring another domain's backup by a typo would be silently wrong).
import { PullbackError } from '../errors.js';
import type { BackupRecord, Repository } from '../store/index.js';

export function resolveBackupSpec(repo: Repository, domain: string, spec: string = 'latest'): BackupRecord {
  if (spec === 'latest') {
    const r = repo.latestComplete(domain);
    if (r === undefined) {
      throw new PullbackError('BACKUP_NOT_FOUND', `domain ${domain} has no complete backup in repository ${repo.dir}: see \`pullback list --repo ${repo.dir}\``);
    }
    return r;
  }
  const r = repo.getBackup(spec);
  if (r === undefined) {
    throw new PullbackError('BACKUP_NOT_FOUND', `no backup ${spec} in repository ${repo.dir}: see \`pullback list --repo ${repo.dir} --domain ${domain}\``);
  }
  if (r.domain !== domain) {
    throw new PullbackError('BACKUP_NOT_FOUND', `backup ${spec} belongs to domain ${r.domain}, not ${domain}`);
  }
  if (r.status !== 'complete') {
    throw new PullbackError('BACKUP_NOT_FOUND', `backup ${spec} of domain ${domain} is ${r.status}, not complete: it cannot be restored`);
  }
  return r;
}
