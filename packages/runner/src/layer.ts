/**
 * The runner's services composed into one layer. It needs a `SessionStore`, a
 * `Transcript`, a `LanguageModel` and the `RunnerConfig`.
 */
import { Effect, Layer } from "effect"
import { CompactionSupervisor } from "./CompactionSupervisor.js"
import { Compactor } from "./Compactor.js"
import { Lanes } from "./Lanes.js"
import { LifecycleEvents } from "./LifecycleEvents.js"
import { Reconciler } from "./Reconciler.js"
import { Runner } from "./Runner.js"
import { Status } from "./Status.js"

/** Every runner service. */
export const layer = Runner.Default.pipe(
  Layer.provideMerge(Status.Default),
  Layer.provideMerge(CompactionSupervisor.Default),
  Layer.provideMerge(Compactor.Default),
  Layer.provideMerge(Reconciler.Default),
  Layer.provideMerge(Layer.merge(LifecycleEvents.Default, Lanes.Default))
)

/** Folds every transcript into the store in the background, for as long as the scope lives. */
export const recoverOnStart = Layer.scopedDiscard(
  Reconciler.pipe(Effect.flatMap((reconciler) => Effect.forkScoped(reconciler.recover())))
)

/** The runner with start-up recovery. */
export const layerWithRecovery = Layer.provideMerge(recoverOnStart, layer)
