/**
 * Runners authenticate to each other when the gateways have a token (`CONVERGE_TOKEN`, which
 * every gateway of one cluster shares). A runner opening a connection to another first sends
 * one line, `converge-runner/1 <proof>\n`, where the proof is an HMAC-SHA-256 of a fixed label
 * under the token; the listening runner reads that line before anything reaches the cluster's
 * protocol, and closes a connection whose first line is not it. Without a token, the runner
 * socket is only offered on loopback (see `RuntimeLayer.clusterOptions`).
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { Socket, SocketServer } from "@effect/platform"
import { Runners } from "@effect/cluster"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { Effect, Layer } from "effect"

const HELLO = "converge-runner/1 "
const NEWLINE = 0x0a
/** A first line longer than this is not a hello. */
const MAX_HELLO = 256

const encoder = new TextEncoder()

/** The line that proves a runner knows `token`. */
export const helloLine = (token: string): Uint8Array =>
  encoder.encode(`${HELLO}${createHmac("sha256", token).update("converge runner socket").digest("hex")}\n`)

const refused = (why: string) =>
  new Socket.SocketGenericError({ reason: "Read", cause: new Error(`runner connection refused: ${why}`) })

/**
 * `socket` as the cluster's protocol sees it: its first line must be `expected` (it is not
 * passed on); a connection that sends anything else is closed with a warning.
 */
const requireHello = (socket: Socket.Socket, expected: Uint8Array): Socket.Socket => {
  // biome-ignore lint/suspicious/noConfusingVoidType: the handler type of `Socket.run`
  const gate = <_, E, R>(handler: (chunk: Uint8Array) => Effect.Effect<_, E, R> | void) => {
    let pending = new Uint8Array(0)
    let open = false
    return (chunk: Uint8Array | string): Effect.Effect<unknown, E | Socket.SocketError, R> | undefined => {
      const bytes = typeof chunk === "string" ? encoder.encode(chunk) : chunk
      if (open) return handler(bytes) ?? undefined
      const joined = new Uint8Array(pending.length + bytes.length)
      joined.set(pending)
      joined.set(bytes, pending.length)
      const end = joined.indexOf(NEWLINE)
      if (end < 0) {
        if (joined.length > MAX_HELLO) return Effect.fail(refused("no hello line"))
        pending = joined
        return
      }
      const line = joined.subarray(0, end + 1)
      if (line.length !== expected.length || !timingSafeEqual(line, expected))
        return Effect.fail(refused("a bad or missing token"))
      open = true
      pending = new Uint8Array(0)
      const rest = joined.subarray(end + 1)
      return rest.length > 0 ? (handler(rest) ?? undefined) : undefined
    }
  }
  const logRefusal = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.tapError(effect, (e) =>
      Socket.isSocketError(e) &&
      String((e as { cause?: unknown }).cause).includes("runner connection refused")
        ? Effect.logWarning(String((e as { cause?: unknown }).cause).replace(/^Error: /, ""))
        : Effect.void
    )
  return {
    [Socket.TypeId]: Socket.TypeId,
    run: (handler, options) => logRefusal(socket.run(gate(handler), options)) as never,
    runRaw: (handler, options) => logRefusal(socket.run(gate(handler), options)) as never,
    writer: socket.writer
  }
}

/** The runner socket server, accepting only runners that send the hello of `token`. */
export const layerAuthenticatedServer = (
  token: string
): Layer.Layer<SocketServer.SocketServer, never, SocketServer.SocketServer> =>
  Layer.effect(
    SocketServer.SocketServer,
    Effect.map(SocketServer.SocketServer, (server) => {
      const expected = helloLine(token)
      return {
        address: server.address,
        run: (handler) => server.run((socket) => handler(requireHello(socket, expected)))
      }
    })
  )

/** Connections to other runners that start with the hello of `token` (as the cluster's own, over TCP). */
export const layerAuthenticatedClientProtocol = (
  token: string
): Layer.Layer<Runners.RpcClientProtocol, never, RpcSerialization.RpcSerialization> =>
  Layer.effect(
    Runners.RpcClientProtocol,
    Effect.gen(function* () {
      const serialization = yield* RpcSerialization.RpcSerialization
      const hello = helloLine(token)
      return (address) =>
        Effect.gen(function* () {
          const socket = yield* NodeSocket.makeNet({
            openTimeout: 1000,
            timeout: 5500,
            host: address.host,
            port: address.port
          })
          // The hello goes first, once per connection, whichever writer writes first.
          let sent = false
          const withHello: Socket.Socket = {
            ...socket,
            writer: Effect.map(
              socket.writer,
              (write) => (chunk: Uint8Array | string | Socket.CloseEvent) =>
                Effect.suspend(() => {
                  if (sent) return write(chunk)
                  sent = true
                  return Effect.zipRight(write(hello), write(chunk))
                })
            )
          }
          return yield* RpcClient.makeProtocolSocket().pipe(
            Effect.provideService(Socket.Socket, withHello),
            Effect.provideService(RpcSerialization.RpcSerialization, serialization)
          )
        }).pipe(Effect.orDie)
    })
  )
