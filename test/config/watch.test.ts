import t from 'tap'
import type { Test } from 'tap'
import { mkdir, mkdtemp, open, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { watchConfigFile } from '../../src/reload.ts'

/** Points the symlink `link` at `target` atomically, as deploy tools do (a new link renamed over it). */
async function repoint (link: string, target: string): Promise<void> {
  await symlink(target, `${link}.tmp`)
  await rename(`${link}.tmp`, link)
}

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-watch-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Watches `file` and records what it held each time a change was reported. */
function record (t: Test, file: string, debounceMs: number): { reads: string[], next: () => Promise<void>, seen: (change: () => Promise<unknown>) => Promise<void> } {
  const reads: string[] = []
  let wake: (() => void) | undefined
  const stop = watchConfigFile(file, () => { reads.push(readFileSync(file, 'utf8')); wake?.() }, { debounceMs })
  t.teardown(stop)
  const next = (): Promise<void> => new Promise((resolve) => { wake = resolve })
  /** Makes `change` and waits until the watcher reports it. */
  const seen = async (change: () => Promise<unknown>): Promise<void> => {
    const changed = next()
    await change()
    await changed
  }
  return { reads, next, seen }
}

t.test('a file written in two parts, with a pause longer than the debounce, is reported once complete', async (t) => {
  const dir = await tempDir(t)
  const file = path.join(dir, 'outrider.yaml')
  await writeFile(file, 'old: 1\n')
  const debounceMs = 400
  const watched = record(t, file, debounceMs)
  const changed = watched.next()
  // A writer that truncates, writes half, stalls, then writes the rest (not a rename).
  const fh = await open(file, 'w')
  await fh.write('first: half\n')
  await fh.sync()
  await new Promise((resolve) => setTimeout(resolve, debounceMs * 1.5))
  await fh.write('second: half\n')
  await fh.close()
  await changed
  t.same(watched.reads, ['first: half\nsecond: half\n'], 'never the first half alone')
})

t.test('a config symlinked from another directory: an edit of the target is seen, also after the link is re-pointed', async (t) => {
  const dir = await tempDir(t)
  await Promise.all(['etc', 'srv', 'srv2'].map((d) => mkdir(path.join(dir, d))))
  const link = path.join(dir, 'etc', 'outrider.yaml')
  await writeFile(path.join(dir, 'srv', 'outrider.yaml'), 'v: 1\n')
  await writeFile(path.join(dir, 'srv2', 'other.yaml'), 'v: 3\n')
  await symlink(path.join(dir, 'srv', 'outrider.yaml'), link)
  const watched = record(t, link, 50)

  await watched.seen(() => writeFile(path.join(dir, 'srv', 'outrider.yaml'), 'v: 2\n'))
  t.same(watched.reads, ['v: 2\n'], 'the edit of the target, in place')

  // Re-pointed by rename, as `ln -sfn` does: a change in the link's own directory.
  await watched.seen(() => repoint(link, path.join(dir, 'srv2', 'other.yaml')))
  await watched.seen(() => writeFile(path.join(dir, 'srv2', 'other.yaml'), 'v: 4\n'))
  t.same(watched.reads.at(-1), 'v: 4\n', 'the new target is watched')
})

t.test('a chain of links: re-pointing a link in the middle is seen, and so are later edits of the new file', async (t) => {
  const dir = await tempDir(t)
  await Promise.all(['etc', 'srv'].map((d) => mkdir(path.join(dir, d))))
  const link = path.join(dir, 'etc', 'cfg.yaml')
  const current = path.join(dir, 'srv', 'current.yaml')
  await writeFile(path.join(dir, 'srv', 'v1.yaml'), 'v: 1\n')
  await writeFile(path.join(dir, 'srv', 'v2.yaml'), 'v: 2\n')
  await symlink(path.join(dir, 'srv', 'v1.yaml'), current)
  await symlink(current, link)
  const watched = record(t, link, 50)

  await watched.seen(() => repoint(current, path.join(dir, 'srv', 'v2.yaml')))
  t.same(watched.reads.at(-1), 'v: 2\n', 'the middle link re-pointed')
  await watched.seen(() => writeFile(path.join(dir, 'srv', 'v2.yaml'), 'v: 3\n'))
  t.same(watched.reads.at(-1), 'v: 3\n', 'the file it now ends at is watched')
})

t.test('a directory link on the way, re-pointed as deploy tools do (current → releases/v2), is seen', async (t) => {
  const dir = await tempDir(t)
  await Promise.all(['etc', 'app/releases/v1', 'app/releases/v2'].map((d) => mkdir(path.join(dir, d), { recursive: true })))
  await writeFile(path.join(dir, 'app/releases/v1/outrider.yaml'), 'v: v1\n')
  await writeFile(path.join(dir, 'app/releases/v2/outrider.yaml'), 'v: v2\n')
  const current = path.join(dir, 'app/current')
  await symlink(path.join(dir, 'app/releases/v1'), current)
  const link = path.join(dir, 'etc/outrider.yaml')
  await symlink(path.join(current, 'outrider.yaml'), link)
  const watched = record(t, link, 50)

  await watched.seen(() => repoint(current, path.join(dir, 'app/releases/v2')))
  t.same(watched.reads.at(-1), 'v: v2\n', 'the re-pointed directory')
  await watched.seen(() => writeFile(path.join(dir, 'app/releases/v2/outrider.yaml'), 'v: v2b\n'))
  t.same(watched.reads.at(-1), 'v: v2b\n', 'and later edits in the new release')
})
