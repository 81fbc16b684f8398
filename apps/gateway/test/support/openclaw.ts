/** Sessions as OpenClaw leaves them on disk, for the tests to start from. */
import { randomUUID } from "node:crypto"
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import { paragraph } from "./http.js"

/** An OpenClaw-style session on disk: three exchanges in a pi v3 transcript, its store entry saying 0. */
export const writeOpenClawSession = async (dir: string, key: string) => {
  const sessionId = randomUUID()
  const t0 = Date.UTC(2026, 9, 1, 9)
  const lines: Array<unknown> = [
    { type: "session", version: 3, id: sessionId, timestamp: new Date(t0).toISOString(), cwd: "/home/user" }
  ]
  let parentId: string | null = null
  for (let i = 0; i < 6; i++) {
    const id = `m${i}`
    const at = t0 + i * 1_000
    const message =
      i % 2 === 0
        ? { role: "user", content: paragraph(i), timestamp: at }
        : {
            role: "assistant",
            content: [{ type: "text", text: `answer ${i}` }],
            stopReason: "stop",
            timestamp: at
          }
    lines.push({ type: "message", id, parentId, timestamp: new Date(at).toISOString(), message })
    parentId = id
  }
  await writeFile(join(dir, `${sessionId}.jsonl`), `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`)
  await writeFile(
    join(dir, "sessions.json"),
    JSON.stringify({
      [key]: {
        sessionId,
        updatedAt: t0 + 6_000,
        compactionCount: 0,
        totalTokens: 1_234,
        totalTokensFresh: true,
        contextTokens: 2_000,
        model: "claude-sonnet-4-5",
        deliveryContext: { channel: "telegram", to: "user:4242" }
      }
    })
  )
  return sessionId
}
