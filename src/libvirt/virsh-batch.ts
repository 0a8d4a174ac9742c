// Several virsh commands in one line of virsh's command language. Pure: builds the line and
// cuts the output; virsh.ts and virsh-session.ts run it.
//
// Why: every virsh process links ~40 libraries and opens its own connection to libvirtd
// (40-160 ms of wall time each on a busy 2-core host), and a backup asks several questions.
// virsh runs a ';'-separated command line in one connection and goes on after a command
// fails. Terms: a *batch* is that line. It starts with a *start mark* and follows every
// command with an *end mark*, each printed by `echo` to stdout and by `echo --err` to stderr
// (as "error: MARK"), so each command's stdout and stderr can be cut out of the two streams,
// whose order within each stream is the order of the commands. A mark is printed as
// "TOKEN N@@" but written in the line as two quoted words ('TOKEN' 'N@@'): an interactive
// virsh that echoes the line it reads never prints a mark by echoing it.
//
// virsh's command-line parser quotes like a shell: inside '...' nothing is special, and a
// quote itself is written '\''. Every argument is quoted that way.

export interface BatchOutcome {
  stdout: string;
  /** The command's own stderr ("error: ..." lines); empty when it succeeded. */
  stderr: string;
}

function quote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

function marks(token: string, label: string): string {
  const words = `${quote(token)} ${quote(`${label}@@`)}`;
  return `echo ${words} ; echo --err ${words}`;
}

function printed(token: string, label: string): string {
  return `${token} ${label}@@`;
}

/** The command line for `commands` (argv lists without "virsh -c URI"), marked with `token`. */
export function buildBatch(commands: readonly (readonly string[])[], token: string): string {
  return [marks(token, 's'), ...commands.map((argv, i) => `${argv.map(quote).join(' ')} ; ${marks(token, String(i))}`)].join(' ; ');
}

/** True when both streams hold every mark of a batch of `count` commands. */
export function batchComplete(stdout: string, stderr: string, count: number, token: string): boolean {
  const last = printed(token, String(count - 1));
  return stdout.includes(last) && stderr.includes(`error: ${last}\n`);
}

/**
 * Cuts the outputs of a batch into one outcome per command, or undefined when virsh did not
 * get through the batch (e.g. no connection): then nothing can be attributed to a command.
 * Anything before the start marks (a prompt, the echoed line) is not a command's output.
 */
export function splitBatch(stdout: string, stderr: string, count: number, token: string): BatchOutcome[] | undefined {
  const start = printed(token, 's');
  const so = stdout.indexOf(start);
  const se = stderr.indexOf(`error: ${start}\n`);
  if (so < 0 || se < 0) return undefined;
  let o = so + start.length;
  let e = se + `error: ${start}\n`.length;
  const out: BatchOutcome[] = [];
  for (let i = 0; i < count; i++) {
    const mark = printed(token, String(i));
    const oe = stdout.indexOf(mark, o);
    const errLine = `error: ${mark}\n`;
    const ee = stderr.indexOf(errLine, e);
    if (oe < 0 || ee < 0) return undefined;
    out.push({ stdout: stdout.slice(o, oe), stderr: stderr.slice(e, ee) });
    o = oe + mark.length;
    e = ee + errLine.length;
  }
  return out;
}
