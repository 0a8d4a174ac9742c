// Several read-only virsh commands in one virsh process. Pure: builds the command string and
// splits the output; virsh.ts runs it.
//
// Why: every virsh process links ~40 libraries and opens its own connection to libvirtd
// (~25 ms of CPU and 30-150 ms of wall time each on a busy 2-core host), and a backup asks
// five or six questions before it starts. virsh runs a ';'-separated command string in one
// connection, and goes on after a command fails. Terms: a *batch* is that string; after each
// command it runs `echo MARK` (to stdout) and `echo --err MARK` (to stderr, printed as
// "error: MARK"), so each command's stdout and stderr can be cut out of the two streams,
// whose order within each stream is the order of the commands.
//
// virsh's command-string parser quotes like a shell: inside '...' nothing is special, and a
// quote itself is written '\''. Every argument is quoted that way.

export interface BatchOutcome {
  stdout: string;
  /** The command's own stderr ("error: ..." lines); empty when it succeeded. */
  stderr: string;
}

function quote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The command string for `commands` (argv lists without "virsh -c URI"), marked with `token`. */
export function buildBatch(commands: readonly (readonly string[])[], token: string): string {
  return commands
    .map((argv, i) => {
      const mark = quote(`${token}${i}@@`);
      return `${argv.map(quote).join(' ')} ; echo ${mark} ; echo --err ${mark}`;
    })
    .join(' ; ');
}

/**
 * Cuts the outputs of a batch into one outcome per command, or undefined when virsh did not
 * get through the batch (e.g. no connection): then nothing can be attributed to a command.
 */
export function splitBatch(stdout: string, stderr: string, count: number, token: string): BatchOutcome[] | undefined {
  const out: BatchOutcome[] = [];
  let o = 0;
  let e = 0;
  for (let i = 0; i < count; i++) {
    const mark = `${token}${i}@@`;
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
