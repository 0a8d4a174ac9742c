// The questions every backup asks libvirt first, before it can decide anything: they go to
// virsh as one batch (Libvirt.prefetch). A small module of its own so the CLI can send them
// the moment it knows the domain, while the rest of pullback's modules are still loading.
import type { CallOptions, Libvirt, PrefetchQuery } from '../libvirt/libvirt.js';

export const FIRST_QUERIES: readonly PrefetchQuery[] = ['version', 'state', 'inactiveXml', 'xml', 'job', 'checkpoints'];

export function prefetchFirstQueries(libvirt: Libvirt, domain: string, opts: CallOptions = {}): Promise<void> {
  return libvirt.prefetch(domain, FIRST_QUERIES, opts);
}
