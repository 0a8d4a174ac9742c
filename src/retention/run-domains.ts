// Which domains a nightly run backs up (pure): an explicit list, or every domain libvirt
// knows filtered by include/exclude glob patterns. Globs: `*` any run of characters, `?` one
// character, `[abc]` / `[a-z]` / `[!abc]` a class; everything else literal; the whole name
// must match. A name is selected when it matches some include and no exclude.
import type { DomainSelection } from './config.js';

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, end);
      const negate = body.startsWith('!');
      if (negate) body = body.slice(1);
      re += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function matchesGlob(name: string, glob: string): boolean {
  return globToRegExp(glob).test(name);
}

/** The domains to back up, in a stable order (the list's order, or sorted). */
export function selectDomains(selection: DomainSelection, known: readonly string[]): string[] {
  if (selection.kind === 'names') return [...selection.names];
  return [...known]
    .filter((n) => selection.include.some((g) => matchesGlob(n, g)) && !selection.exclude.some((g) => matchesGlob(n, g)))
    .sort();
}
