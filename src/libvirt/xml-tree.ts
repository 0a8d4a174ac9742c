// An ordered XML tree over fast-xml-parser's preserveOrder mode. Pure: no I/O.
//
// Terms: an *element* has a name, string attributes (in document order) and children; a
// *text* node is character data exactly as written (whitespace included, so a document
// re-serialises with its original layout); anything else (comments, CDATA, processing
// instructions) is an *opaque* node kept verbatim. Values are never coerced to numbers —
// libvirt writes '0x0000' and '007' and means strings. Round trip (parse → serialize) keeps
// every element, attribute and comment; only the quote style changes (' → ").
import { createRequire } from 'node:module';
// fast-xml-parser's CommonJS entry is one bundled file; its ESM entry is ~40 modules that
// take ~100 ms to load, a sixth of a no-change backup (measured: docs/benchmarks.md).
const { XMLBuilder, XMLParser, XMLValidator } = createRequire(import.meta.url)('fast-xml-parser') as typeof import('fast-xml-parser');
import { PullbackError } from '../errors.js';

export interface XmlElement {
  kind: 'element';
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
}
export interface XmlText {
  kind: 'text';
  text: string;
}
/** A comment, CDATA section or processing instruction, in fast-xml-parser's own shape. */
export interface XmlOpaque {
  kind: 'opaque';
  raw: Record<string, unknown>;
}
export type XmlNode = XmlElement | XmlText | XmlOpaque;

/** A parsed document: the nodes before the root (declaration, comments) and the root. */
export interface XmlDocument {
  prolog: XmlNode[];
  root: XmlElement;
}

const ATTRS = ':@';
const TEXT = '#text';
const COMMENT = '#comment';
const CDATA = '#cdata';

const sharedOptions = {
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  textNodeName: TEXT,
  commentPropName: COMMENT,
  cdataPropName: CDATA,
  processEntities: true,
  htmlEntities: false,
} as const;

const parser = new XMLParser({
  ...sharedOptions,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  ignoreDeclaration: false,
  ignorePiTags: false,
  allowBooleanAttributes: false,
});

type RawNode = Record<string, unknown>;

/** Parses XML text; `what` names the document in error messages (e.g. "domain XML of vm1"). */
export function parseXml(xml: string, what: string): XmlDocument {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    const { msg, line, col } = valid.err;
    throw new PullbackError('XML_INVALID', `${what} is not well-formed XML: ${msg} (line ${line}, column ${col})`);
  }
  const raw = parser.parse(xml) as RawNode[];
  const nodes = raw.map(fromRaw);
  const rootIndex = nodes.findIndex((n) => n.kind === 'element');
  const root = nodes[rootIndex];
  if (root === undefined || root.kind !== 'element') {
    throw new PullbackError('XML_INVALID', `${what} has no root element`);
  }
  return { prolog: nodes.slice(0, rootIndex).filter((n) => n.kind !== 'text'), root };
}

function fromRaw(raw: RawNode): XmlNode {
  const keys = Object.keys(raw).filter((k) => k !== ATTRS);
  const key = keys[0];
  if (keys.length !== 1 || key === undefined) return { kind: 'opaque', raw };
  if (key === TEXT) return { kind: 'text', text: String(raw[TEXT]) };
  if (key === COMMENT || key === CDATA || key.startsWith('?')) return { kind: 'opaque', raw };
  const attrs: Record<string, string> = {};
  const rawAttrs = raw[ATTRS];
  if (rawAttrs !== undefined && typeof rawAttrs === 'object' && rawAttrs !== null) {
    for (const [k, v] of Object.entries(rawAttrs)) attrs[k] = String(v);
  }
  const kids = raw[key];
  const children = Array.isArray(kids) ? (kids as RawNode[]).map(fromRaw) : [];
  return { kind: 'element', name: key, attrs, children };
}

function toRaw(node: XmlNode): RawNode {
  switch (node.kind) {
    case 'text':
      return { [TEXT]: node.text };
    case 'opaque':
      return node.raw;
    case 'element': {
      const raw: RawNode = { [node.name]: node.children.map(toRaw) };
      if (Object.keys(node.attrs).length > 0) raw[ATTRS] = { ...node.attrs };
      return raw;
    }
  }
}

const compactBuilder = new XMLBuilder({ ...sharedOptions, format: false, suppressEmptyNode: true });
const indentedBuilder = new XMLBuilder({
  ...sharedOptions,
  format: true,
  indentBy: '  ',
  suppressEmptyNode: true,
});

/**
 * Serialises a document. `indent` re-indents (for trees we built, which have no whitespace
 * text); without it, text nodes carry the layout (for trees we parsed and edited).
 * Always ends with one newline, like virsh output.
 */
export function serializeXml(doc: XmlDocument, opts: { indent?: boolean } = {}): string {
  const builder = opts.indent === true ? indentedBuilder : compactBuilder;
  const nodes = [...doc.prolog, doc.root].map(toRaw);
  const out = String(builder.build(nodes));
  return `${out.replace(/^\n+/, '').replace(/\s+$/, '')}\n`;
}

// ---- construction and navigation helpers ----

/** A new element; children given as nodes or, for a text-only element, as one string. */
export function el(name: string, attrs: Record<string, string> = {}, children: XmlNode[] | string = []): XmlElement {
  const kids: XmlNode[] = typeof children === 'string' ? [{ kind: 'text', text: children }] : children;
  return { kind: 'element', name, attrs: { ...attrs }, children: kids };
}

export function childElements(parent: XmlElement, name?: string): XmlElement[] {
  return parent.children.filter(
    (c): c is XmlElement => c.kind === 'element' && (name === undefined || c.name === name),
  );
}

export function child(parent: XmlElement, name: string): XmlElement | undefined {
  return childElements(parent, name)[0];
}

/** Concatenated text content of an element's direct text children, or undefined if none. */
export function textOf(elem: XmlElement | undefined): string | undefined {
  if (elem === undefined) return undefined;
  const texts = elem.children.filter((c): c is XmlText => c.kind === 'text');
  if (texts.length === 0) {
    // CDATA sections are opaque nodes of shape { '#cdata': [{ '#text': '...' }] }.
    const cdata = elem.children.find((c) => c.kind === 'opaque' && CDATA in c.raw);
    if (cdata?.kind === 'opaque') {
      const inner = cdata.raw[CDATA];
      if (Array.isArray(inner)) return inner.map((n: RawNode) => String(n[TEXT] ?? '')).join('');
    }
    return undefined;
  }
  return texts.map((t) => t.text).join('');
}

/** Text of a child element, trimmed; undefined when the child is absent. */
export function childText(parent: XmlElement, name: string): string | undefined {
  return textOf(child(parent, name))?.trim();
}

/** Removes every direct child element called `name` together with the whitespace before it. */
export function removeChildren(parent: XmlElement, name: string): void {
  const kept: XmlNode[] = [];
  for (const c of parent.children) {
    if (c.kind === 'element' && c.name === name) {
      const prev = kept[kept.length - 1];
      if (prev?.kind === 'text' && prev.text.trim() === '') kept.pop();
      continue;
    }
    kept.push(c);
  }
  parent.children = kept;
}

/**
 * Requires the document's root to be `name`; `what` names the document in the error.
 */
export function expectRoot(doc: XmlDocument, name: string, what: string): XmlElement {
  if (doc.root.name !== name) {
    throw new PullbackError('XML_INVALID', `${what}: expected a <${name}> document, got <${doc.root.name}>`);
  }
  return doc.root;
}
