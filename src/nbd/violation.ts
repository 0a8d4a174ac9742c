// A protocol violation: the server sent something the spec forbids (wrong magic, unknown
// cookie, a chunk outside the request, ...). Pure codec/parser code throws this with a bare
// description; the connection turns it into PullbackError('NBD_PROTOCOL') naming the export
// and each affected request, and hard-disconnects (proto.md "Terminating the transmission phase":
// either side MAY initiate a hard disconnect on a violation of a mandatory condition).
export class NbdProtocolViolation extends Error {
  override name = 'NbdProtocolViolation';
}
