// A request the server answered with an error (proto.md "Error values"): EIO, EINVAL, ...
// Only that request fails; the connection stays usable. `errno` is the NBD error value,
// `errnoName` its spec name, `serverMessage` the optional human text from an error chunk.
import { PullbackError } from '../errors.js';
import { errnoName } from './constants.js';

export class NbdServerError extends PullbackError {
  readonly errno: number;
  readonly errnoName: string;
  readonly serverMessage: string;
  /** Offset from NBD_REPLY_TYPE_ERROR_OFFSET, if the server named one. */
  readonly errorOffset: number | undefined;

  constructor(what: string, errno: number, serverMessage: string, errorOffset: number | undefined) {
    const at = errorOffset === undefined ? '' : ` at offset ${errorOffset}`;
    const text = serverMessage === '' ? '' : `: ${serverMessage}`;
    super('NBD_SERVER_ERROR', `${what}: the server answered ${errnoName(errno)}${at}${text}`);
    this.errno = errno;
    this.errnoName = errnoName(errno);
    this.serverMessage = serverMessage;
    this.errorOffset = errorOffset;
  }
}
