export * as Cluster from "./ClusterLayer.js"
export * from "./SessionEntity.js"
export * from "./SessionRouter.js"
