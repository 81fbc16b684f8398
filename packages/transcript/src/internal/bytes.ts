/** Byte helpers: UTF-8 decoding that keeps offsets honest, and a line fingerprint. */

// `ignoreBOM`: a BOM is stripped only at the start of a file, by the parser, never mid-file.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true })
const encoder = new TextEncoder()

/** Decodes UTF-8 bytes (invalid sequences become U+FFFD). */
export const decode = (bytes: Uint8Array): string => decoder.decode(bytes)

/** Encodes a string as UTF-8. */
export const encode = (text: string): Uint8Array => encoder.encode(text)

/** FNV-1a (32 bit) of `bytes[start, end)`: identifies the last line a resume state was taken at. */
export const fingerprint = (bytes: Uint8Array, start = 0, end = bytes.length): number => {
  let h = 0x811c9dc5
  for (let i = start; i < end; i++) {
    h ^= bytes[i]!
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** Concatenates byte arrays (the one array itself when there is one). */
export const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  if (parts.length === 1) return parts[0]!
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}
