import { Transform, type TransformCallback } from 'node:stream'

/** Passes a response body through while keeping a copy up to `max` bytes; hands the copy over at the end. */
export class Capture extends Transform {
  readonly #max: number
  readonly #done: (body: Buffer | undefined) => void
  #chunks: Buffer[] | undefined = []
  #size = 0

  constructor (max: number, done: (body: Buffer | undefined) => void) {
    super()
    this.#max = max
    this.#done = done
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#chunks !== undefined) {
      this.#size += chunk.length
      if (this.#size > this.#max) this.#chunks = undefined
      else this.#chunks.push(chunk)
    }
    cb(null, chunk)
  }

  override _flush (cb: TransformCallback): void {
    this.#done(this.#chunks === undefined ? undefined : Buffer.concat(this.#chunks, this.#size))
    cb()
  }
}
