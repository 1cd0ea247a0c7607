// Server.swift — `personalive serve`: the reference's webcam server (webcam/ with FastAPI,
// vid2vid.py, a JS front-end) rebuilt on Hummingbird, plus a job API for offline animation:
//   GET  /                          the webcam page (WebPage.swift)
//   GET  /openapi.json              the API description (OpenAPIDocument.swift)
//   GET  /healthz                   {"status":"ok", jobs and streams}
//   POST /v1/animations             multipart reference + driving | pose [+ motion] → {"id"}
//   GET  /v1/animations/{id}        status, progress, error
//   GET  /v1/animations/{id}/video  the mp4 of a done job
//   DELETE /v1/animations/{id}      forgets a job and its files
//   GET  /v1/stream                 WebSocket streaming (StreamSession.swift)
// One model in memory (a ModelLock); errors are JSON bodies naming the problem (APIError).
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Inference
import Logging
import Media
import NIOCore
import Torch

public struct ServeOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Largest accepted request body of `POST /v1/animations`, bytes.
    public var maxUploadBytes = 64 << 20
    /// Animation jobs running at once (their chunks interleave on the one model).
    public var concurrency = 1
    /// WebSocket streams open at once; one more is refused.
    public var maxStreams = 4
    /// Most driving frames a job animates (nil: all).
    public var maxFrames: Int?
    public var seed: UInt64 = 42
    /// Parent of the server's work folder (uploads and results); the folder is removed on shutdown.
    public var workRoot = FileManager.default.temporaryDirectory
    public init() {}
}

public final class PersonaLiveServer: @unchecked Sendable {
    public let options: ServeOptions
    public let modelLock: ModelLock
    let logger: Logger
    let work: URL
    let jobs: JobQueue
    let slots: StreamSlots

    public init(model: PersonaLiveModel, options: ServeOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        modelLock = ModelLock(model: model)
        work = options.workRoot.appendingPathComponent("personalive-serve-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        jobs = JobQueue(modelLock: modelLock, root: work, concurrency: options.concurrency, seed: options.seed,
                        maxFrames: options.maxFrames, logger: logger)
        slots = StreamSlots(limit: options.maxStreams)
    }

    /// The server's work folder (jobs' files, decode scratch).
    public var workFolder: URL { work }

    /// Serves until the task is cancelled (or the process is asked to stop); then stops the job
    /// workers and removes the work folder. `onRunning` hears the bound port (useful with port 0).
    public func run(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        defer {
            jobs.shutdown()
            try? FileManager.default.removeItem(at: work)
        }
        let app = Application(
            router: httpRouter(),
            server: .http1WebSocketUpgrade(webSocketRouter: webSocketRouter(),
                                           configuration: .init(ws: .init(maxFrameSize: 16 << 20))),
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "personalive"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
    }

    // MARK: routes

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    func httpRouter() -> Router<BasicWebSocketRequestContext> {
        let router = Router(context: BasicWebSocketRequestContext.self)
        router.add(middleware: JSONErrorMiddleware())
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: WebPage.html)))
        }
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
        router.get("/healthz") { [jobs, slots] _, _ in
            let c = jobs.counts
            return try Self.json(["status": "ok", "queued": "\(c.queued)", "running": "\(c.running)",
                                  "streams": "\(slots.count)"])
        }
        router.post("/v1/animations") { [self] request, _ in
            try await createAnimation(request)
        }
        router.get("/v1/animations/:id") { [jobs] _, context in
            let id = try context.parameters.require("id")
            guard let state = jobs.state(id) else { throw APIError(.notFound, "no animation job '\(id)'") }
            return try Self.json(state)
        }
        router.get("/v1/animations/:id/video") { [jobs] _, context in
            let id = try context.parameters.require("id")
            guard let (state, url) = jobs.video(id) else { throw APIError(.notFound, "no animation job '\(id)'") }
            guard state.status == .done else {
                throw APIError(.conflict, "animation job '\(id)' is \(state.status.rawValue), the video exists once it is done")
            }
            let data = try Data(contentsOf: url)
            return Response(status: .ok, headers: [.contentType: "video/mp4"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.delete("/v1/animations/:id") { [jobs] _, context in
            let id = try context.parameters.require("id")
            guard try jobs.delete(id) else { throw APIError(.notFound, "no animation job '\(id)'") }
            return Response(status: .noContent)
        }
        router.get("/v1/stream") { _, _ -> Response in
            throw APIError(.badRequest, "/v1/stream is a WebSocket endpoint: connect with an Upgrade: websocket request")
        }
        return router
    }

    func webSocketRouter() -> Router<BasicWebSocketRequestContext> {
        let router = Router(context: BasicWebSocketRequestContext.self)
        router.ws("/v1/stream") { [self] inbound, outbound, _ in
            guard slots.take() else {
                // Refused in-band, but only once the client has sent its first message (the reference):
                // a refusal written right after the upgrade sometimes never reached our own client (a
                // `make test` hang; NIO's client has lost bytes that arrive with the 101 before). A refused
                // upgrade cannot carry a body in Hummingbird (an empty 400), so that is no alternative.
                for try await _ in inbound.messages(maxSize: 16 << 20) { break }
                try await outbound.write(.text(StreamSession.error(slots.busyMessage)))
                try await outbound.close(.unknown(1013), reason: "too many streams")
                return
            }
            defer { slots.give() }
            let session = StreamSession(modelLock: modelLock, scratch: work, seed: options.seed, logger: logger)
            do {
                try await session.run(inbound: inbound, outbound: outbound)
            } catch is CancellationError {
                logger.info("stream closed: the server is stopping")
            } catch {
                logger.error("stream failed: \(error)")
                try? await outbound.write(.text(StreamSession.error("stream failed: \(error)")))
                try? await outbound.close(.unexpectedServerError, reason: "stream failed")
            }
        }
        return router
    }

    // MARK: POST /v1/animations

    func createAnimation(_ request: Request) async throws -> Response {
        let limit = options.maxUploadBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(.contentTooLarge, "upload of \(length) bytes is over the limit of \(limit) bytes (--max-upload)")
        }
        let boundary = try MultipartForm.boundary(of: request.headers[.contentType])
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: limit)
        } catch {
            throw APIError(.contentTooLarge, "upload is over the limit of \(limit) bytes (--max-upload)")
        }
        let parts = try MultipartForm.parse(body, boundary: boundary)
        func part(_ name: String) -> FormPart? { parts.first { $0.name == name } }
        let known: Set<String> = ["reference", "driving", "pose", "motion"]
        if let unknown = parts.first(where: { !known.contains($0.name) }) {
            throw APIError(.badRequest, "unknown form field '\(unknown.name)' (expected reference, driving or pose, optional motion)")
        }
        guard let reference = part("reference"), !reference.bytes.isEmpty else {
            throw APIError(.badRequest, "missing form field 'reference' (the portrait, PNG or JPEG)")
        }
        let driving = part("driving"), pose = part("pose"), motion = part("motion")
        guard (driving == nil) != (pose == nil) else {
            throw APIError(.badRequest, "give exactly one of the form fields 'driving' (a video) and 'pose' (pose JSON)")
        }
        if motion != nil && pose == nil { throw APIError(.badRequest, "form field 'motion' goes with 'pose'") }

        let (id, folder) = try jobs.makeFolder()
        do {
            let input = try await onThread("personalive-upload") { [self] in
                try validate(reference: reference, driving: driving, pose: pose, motion: motion, folder: folder)
            }
            jobs.submit(id: id, folder: folder, input: input.value)
        } catch {
            try? FileManager.default.removeItem(at: folder)
            throw error
        }
        return try Self.json(["id": id], status: .accepted)
    }

    /// Stores and checks the uploads; every failure is a 4xx naming the field.
    func validate(reference: FormPart, driving: FormPart?, pose: FormPart?, motion: FormPart?,
                  folder: URL) throws -> UncheckedBox<JobInput> {
        let image = try ImageBytes.decode(reference.bytes, what: "reference", scratch: folder, logger: logger)
        if let driving {
            guard !driving.bytes.isEmpty else { throw APIError(.badRequest, "driving: the video is empty") }
            let ext = driving.filename.map { URL(fileURLWithPath: $0).pathExtension }.flatMap { $0.isEmpty ? nil : $0 } ?? "mp4"
            let safeExt = ext.filter { $0.isLetter || $0.isNumber }.prefix(8)
            let path = folder.appendingPathComponent("driving.\(safeExt.isEmpty ? "mp4" : String(safeExt))").path
            try Data(driving.bytes).write(to: URL(fileURLWithPath: path))
            let reader: VideoReader
            do {
                reader = try VideoReader(path: path, logger: logger)
            } catch {
                throw APIError(.unprocessableContent, "driving: not a video FFmpeg can read (\(error))")
            }
            let first: RGBImage?
            do { first = try reader.nextFrame() } catch {
                throw APIError(.unprocessableContent, "driving: the video does not decode (\(error))")
            }
            guard first != nil else { throw APIError(.unprocessableContent, "driving: the video has no frames") }
            return UncheckedBox(JobInput(reference: image, driving: .video(path)))
        }
        guard let pose else { throw APIError(.badRequest, "missing form field 'driving' or 'pose'") }
        let posePath = folder.appendingPathComponent("pose.json").path
        try Data(pose.bytes).write(to: URL(fileURLWithPath: posePath))
        let data: PoseData
        do {
            data = try PoseData.read(posePath, keypoints: modelLock.model.motionExtractor.config.num_kp)
        } catch {
            throw APIError(.badRequest, "pose: malformed pose JSON (\("\(error)".replacingOccurrences(of: posePath + ": ", with: "")))")
        }
        guard !data.frames.isEmpty else { throw APIError(.unprocessableContent, "pose: the pose data has no frames") }
        var tokens: Tensor?
        if let motion {
            let path = folder.appendingPathComponent("motion.safetensors").path
            try Data(motion.bytes).write(to: URL(fileURLWithPath: path))
            let t: Tensor
            do {
                let file = try SafeTensorsFile(path: path)
                guard file.keys.contains("motion") else { throw APIError(.badRequest, "motion: no 'motion' tensor in the safetensors file") }
                t = try file.tensor("motion")
            } catch let e as APIError {
                throw e
            } catch {
                throw APIError(.badRequest, "motion: not a safetensors file (\(error))")
            }
            let cfg = modelLock.model.motionEncoder.config
            guard t.shape == [data.frames.count, cfg.tokens, cfg.out_ch] else {
                throw APIError(.unprocessableContent, "motion: shape \(t.shape), expected \([data.frames.count, cfg.tokens, cfg.out_ch]) (one row per pose frame)")
            }
            tokens = t
        }
        return UncheckedBox(JobInput(reference: image, driving: .pose(data, motion: tokens)))
    }
}

/// Every error leaves as JSON: APIError as is, Hummingbird's own (unknown route, …) rewritten.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError {
            throw e
        } catch let e as HTTPError {
            throw APIError(e.status, e.body ?? "\(e.status.reasonPhrase) (\(request.method) \(request.uri.path))")
        } catch {
            throw APIError(.internalServerError, "\(error)")
        }
    }
}
