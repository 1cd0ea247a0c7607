// StreamingPipeline.swift — src/wrapper.py `PersonaLive` as a whole: the front-ends around the
// StreamingEngine. A reference is encoded once (fuse_reference); then every chunk of M driving
// frames (4) is retargeted (reference canonical keypoints and scale, driving rotation, translation
// relative to the first driving frame × t_scale), rendered, turned into PoseGuider features and,
// with the chunk's motion tokens, fed to one engine call, whose emitted x̂0 chunk is VAE-decoded.
// The first call also builds the motion-interpolated warm-up (interpolate_kps_online: 12 poses and
// motion tokens easing from the reference to the first driving frame); the first three calls emit
// those transition frames, so every driving frame comes out three calls after it went in.
import Foundation
import Logging
import Media
import Models
import NN
import Torch

/// One generated frame, with what produced it (for grids).
public struct StreamFrame {
    /// (3, S, S) in [0, 1].
    public let image: Tensor
    /// A transition frame of the warm-up (no driving frame behind it).
    public let isWarmup: Bool
    /// Index of the driving frame it renders (nil for warm-up frames).
    public let drivingIndex: Int?
    /// The driving frame (3, S, S) in [-1, 1], when driven by video.
    public let driving: Tensor?
    /// The rendered keypoints (3, S, S) in [0, 1].
    public let canvas: Tensor
}

public final class StreamingPipeline {
    public let model: PersonaLiveModel
    public let frontEnds: FrontEnds
    public let engine: StreamingEngine
    public let control: ReferenceAttentionControl
    let generator: Generator
    let logger: Logger

    public private(set) var reference: ReferenceFeatures?
    private var firstFrame: KeypointInfo?
    /// What each not-yet-emitted window frame shows, oldest first (≤ window frames).
    private var pending: [(driving: Tensor?, canvas: Tensor, index: Int?)] = []
    private var nextDrivingIndex = 0

    /// Whether this pipeline installed the reference-attention hooks (and removes them when done).
    private let ownsControl: Bool
    /// The lock of a model shared with other pipelines (nil: this pipeline has the model to itself).
    public let modelLock: ModelLock?

    /// `control`: the reference attention already installed on the model's UNets (a training
    /// stage's), else the pipeline installs its own.
    public init(model: PersonaLiveModel, config: StreamConfig? = nil, seed: UInt64 = 42,
                control existing: ReferenceAttentionControl? = nil,
                logger: Logger = Logger(label: "personalive.stream")) throws {
        self.model = model
        self.logger = logger
        frontEnds = FrontEnds(model: model)
        ownsControl = existing == nil
        modelLock = nil
        control = try existing ?? ReferenceAttentionControl(writer: model.reference, reader: model.denoiser,
                                                            fusionBlocks: "full", roundBankToFP16: true)
        engine = try StreamingEngine(config: config ?? model.settings.stream, denoiser: model.denoiser,
                                     reference: model.reference, control: control, scheduler: model.settings.scheduler,
                                     logger: logger)
        generator = try Generator(seed: seed)
    }

    /// A pipeline over a model shared through `lock`: its networks run only under the lock, with
    /// this pipeline's reference attention attached.
    public init(sharing lock: ModelLock, config: StreamConfig? = nil, seed: UInt64 = 42,
                logger: Logger = Logger(label: "personalive.stream")) throws {
        let model = lock.model
        self.model = model
        self.logger = logger
        frontEnds = FrontEnds(model: model)
        ownsControl = true
        modelLock = lock
        control = try lock.makeControl {
            try ReferenceAttentionControl(writer: model.reference, reader: model.denoiser, fusionBlocks: "full",
                                          roundBankToFP16: true)
        }
        engine = try StreamingEngine(config: config ?? model.settings.stream, denoiser: model.denoiser,
                                     reference: model.reference, control: control, scheduler: model.settings.scheduler,
                                     logger: logger)
        generator = try Generator(seed: seed)
    }

    deinit {
        if let modelLock {
            modelLock.release(control)
        } else if ownsControl {
            control.detach()
        } else {
            control.clear()
        }
    }

    /// Run the networks in inference mode (torch.inference_mode: no autograd bookkeeping), else under
    /// no_grad only. In inference mode the frames and latents that come out are inference tensors:
    /// read, encode and measure them freely; clone one to train through it.
    public var inferenceMode = true

    /// Runs `body` with the networks to this pipeline (under the shared model's lock, if any), without
    /// autograd.
    func withModel<T>(_ body: () throws -> T) throws -> T {
        func run() throws -> T { inferenceMode ? try Torch.inferenceMode(body) : try Torch.noGrad(body) }
        if let modelLock { return try modelLock.withModel(control, run) }
        return try run()
    }

    public var chunkFrames: Int { engine.config.temporal_window_size }
    /// Driving frames that go in before the first of them comes out.
    public var latencyFrames: Int { engine.latencyCalls * chunkFrames }

    /// fuse_reference with a portrait.
    public func setReference(_ image: RGBImage) throws {
        try setReference(withModel { try frontEnds.encodeReference(image) })
    }

    public func setReference(_ features: ReferenceFeatures) throws {
        reference = features
        firstFrame = nil
        pending = []
        nextDrivingIndex = 0
    }

    /// The motion tokens a chunk drives with: its own, or the reference's (a still expression).
    func motion(of chunk: DrivingChunk, reference ref: ReferenceFeatures) throws -> Tensor {
        if let m = chunk.motion { return try m.to(model.device, model.dtype) }
        return try ref.motion.expand([chunk.count] + ref.motion.shape.dropFirst())
    }

    /// process_input: one chunk of exactly `chunkFrames` driving frames → the frames this call emits.
    public func process(_ chunk: DrivingChunk) throws -> [StreamFrame] {
        guard let ref = reference else { throw InferenceError("stream: set a reference before driving it") }
        let m = chunkFrames
        guard chunk.count == m else { throw InferenceError("stream: a chunk has \(m) frames, got \(chunk.count)") }
        return try withModel {
            let motion = try motion(of: chunk, reference: ref)
            let mii = engine.config.warmup_frames
            var poseChunk: Tensor
            if let first = firstFrame {
                let moved = try Keypoints.retarget(chunk.pose, reference: ref.detection, firstFrame: first,
                                                   tScale: engine.config.t_scale)
                let canvases = try frontEnds.render(model.motionExtractor.transformedKeypoints(moved))
                poseChunk = try frontEnds.poseFeatures(canvases)
                try remember(chunk, canvases: canvases, from: 0)
            } else {
                // interpolate_kps_online: mii eased poses, then this chunk retargeted.
                let start = try Keypoints.interpolatedStart(reference: ref.detection, driving: chunk.pose, count: mii + 1,
                                                            tScale: engine.config.t_scale,
                                                            numBins: model.motionExtractor.config.num_bins,
                                                            idx: model.motionExtractor.idx_tensor)
                let canvases = try frontEnds.render(model.motionExtractor.transformedKeypoints(start))
                let pose = try frontEnds.poseFeatures(canvases)
                let miiMotion = try Keypoints.interpolate(ref.motion, motion.narrow(0, start: 0, length: 1), count: mii + 1)
                let c = ref.latent.shape
                let initNoise = try Tensor.randn([1, c[1], mii, c[2], c[3]], generator: generator)
                    .to(model.device, ref.latent.dtype)
                try engine.start(referenceLatent: ref.latent, clip: ref.clip, referenceMotion: ref.motion,
                                 warmupPose: pose.narrow(2, start: 0, length: mii), warmupMotion: miiMotion.unsqueeze(0),
                                 initNoise: initNoise)
                for i in 0..<mii {
                    pending.append((nil, try canvases.select(0, i), nil))
                }
                poseChunk = try pose.narrow(2, start: mii, length: m)
                try remember(chunk, canvases: canvases, from: mii)
                firstFrame = try chunk.pose.rows(0, 1)
            }
            let c = ref.latent.shape
            let noise = try Tensor.randn([1, c[1], m, c[2], c[3]], generator: generator).to(model.device, ref.latent.dtype)
            let step = try engine.step(pose: poseChunk, motion: motion.unsqueeze(0), noise: noise)
            let images = try frontEnds.decode(step.latents.squeeze(0).permute([1, 0, 2, 3])).to(.float32)
            let shown = pending.prefix(m)
            pending.removeFirst(m)
            return try shown.enumerated().map { i, p in
                StreamFrame(image: try images.select(0, i), isWarmup: p.index == nil, drivingIndex: p.index,
                            driving: p.driving, canvas: p.canvas)
            }
        }
    }

    /// One chunk of driving images (any size; centre-cropped and resized like `animate`'s frames),
    /// front-ends and stream call together, under the shared model's lock when there is one.
    public func process(images: [RGBImage]) throws -> [StreamFrame] {
        let chunk = try withModel { try frontEnds.drivingChunk(frontEnds.frames(images)) }
        return try process(chunk)
    }

    /// Queues what the chunk's frames show, for pairing with the frames that come out later.
    private func remember(_ chunk: DrivingChunk, canvases: Tensor, from offset: Int) throws {
        for i in 0..<chunk.count {
            pending.append((try chunk.frames?.select(0, i), try canvases.select(0, offset + i), nextDrivingIndex))
            nextDrivingIndex += 1
        }
    }
}
