/**
 * The gateway's `HttpApi` (DESIGN §7): its groups, and the errors any route may answer with.
 */
import { HttpApi, OpenApi } from "@effect/platform"
import { ShuttingDown } from "@converge/domain"
import { BadRequest, PayloadTooLarge, RouteNotFound, Unauthorized } from "./Errors.js"
import { EventsApi } from "./Events/Api.js"
import { HealthApi } from "./Health/Api.js"
import { ObserveApi } from "./Observe/Api.js"
import { SessionsApi } from "./Sessions/Api.js"

/** Every route of the gateway. */
export class GatewayApi extends HttpApi.make("converge")
  .add(SessionsApi)
  .add(EventsApi)
  .add(HealthApi)
  .add(ObserveApi)
  .addError(BadRequest, { status: 400 })
  .addError(Unauthorized, { status: 401 })
  .addError(RouteNotFound, { status: 404 })
  .addError(PayloadTooLarge, { status: 413 })
  .addError(ShuttingDown, { status: ShuttingDown.status })
  .annotate(OpenApi.Title, "Converge gateway")
  .annotate(
    OpenApi.Description,
    "Turns, compactions and lifecycle events of Converge sessions. When CONVERGE_TOKEN is set, " +
      "every route but /healthz and the sessions page (/) needs `Authorization: Bearer <token>`."
  ) {}
