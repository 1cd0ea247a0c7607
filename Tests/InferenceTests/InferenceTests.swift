// InferenceTests.swift — the inference layer end to end on a small random PersonaLive model written
// as a model.yaml with weights: animation from a real driving video (frame count, fps, audio),
// driving by pose data (the round trip through `pose extract` gives the same frames), the stream's
// warm-up and tail padding, and the errors for bad input (named, nothing left behind).
import Foundation
import Inference
import Media
import Models
import NN
import Testing
import Torch

enum InferencePaths {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static var media: URL { packageRoot.deletingLastPathComponent().appendingPathComponent("shared/media") }

    static func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pl-inf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}

/// A tiny PersonaLive model (the shipped tiny sizes) with random weights, written as a model.yaml
/// naming a safetensors file per module, so loading goes through ModelFileLoader.
func writeTinyModel(in dir: URL, temporal: Bool = false) throws -> String {
    let root = InferencePaths.packageRoot.appendingPathComponent("Configs/tiny")
    let arch = try ConfigLoader.load(JSONValue.self, path: root.appendingPathComponent("model.yaml").path)
    let vaeRun = try ConfigLoader.load(JSONValue.self, path: root.appendingPathComponent("vae.yaml").path)
    let meRun = try ConfigLoader.load(JSONValue.self, path: root.appendingPathComponent("motion_extractor.yaml").path)
    func section<T: Decodable>(_ doc: JSONValue, _ key: String) throws -> T { try #require(doc[key]).decode(T.self) }
    var dc: UNet3DConditionModel.Config = try section(arch, "denoising_unet")
    dc.use_temporal_module = temporal
    try Torch.manualSeed(5)
    let modules: [(String, Module)] = [("denoising_unet", try UNet3DConditionModel(dc)),
         ("reference_unet", try UNet2DConditionModel(section(arch, "reference_unet"), withOutputLayers: false)),
         ("pose_guider", try PoseGuider(section(arch, "pose_guider"))),
         ("motion_encoder", try MotionEncoder(section(arch, "motion_encoder"))),
         ("motion_extractor", try MotionExtractor(section(try #require(meRun["model"]), "motion_extractor"))),
         ("vae", try AutoencoderKL(section(try #require(vaeRun["model"]), "vae"))),
         ("image_encoder", try CLIPVisionModelWithProjection(section(arch, "image_encoder")))]
    var weights: [String] = []
    for (name, m) in modules {
        let file = dir.appendingPathComponent("\(name).safetensors").path
        try SafeTensors.write(m.stateDict(), to: file)
        weights.append("  \(name): \(file)")
    }
    let text = try String(contentsOf: root.appendingPathComponent("model.yaml"), encoding: .utf8)
    let yaml = text + """

        motion_extractor: {num_kp: 21, num_bins: 66, depths: [1, 1, 2, 1], dims: [24, 48, 96, 192]}
        vae:
          down_block_types: [DownEncoderBlock2D, DownEncoderBlock2D, DownEncoderBlock2D, DownEncoderBlock2D]
          up_block_types: [UpDecoderBlock2D, UpDecoderBlock2D, UpDecoderBlock2D, UpDecoderBlock2D]
          block_out_channels: [32, 32, 64, 64]
          layers_per_block: 1
          latent_channels: 4
          norm_num_groups: 8
          sample_size: 64
        pipeline: {image_size: 64, motion_encoder_size: 64, motion_extractor_size: 64, latent_scale: 0.5}
        weights:
        \(weights.joined(separator: "\n"))

        """
    let path = dir.appendingPathComponent("model.yaml").path
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// Decoded frames of a video as float arrays.
func decodedFrames(_ path: String) throws -> [[Float]] {
    try VideoReader(path: path).readAll().map { $0.pixels.map(Float.init) }
}

@Suite(.serialized) struct InferenceTests {
    @Test func streamConfigRejectsBadValues() throws {
        func decode(_ yaml: String) throws -> StreamConfig { try ConfigLoader.decode(StreamConfig.self, yaml: yaml, file: "s.yaml") }
        #expect(try decode("hkm_tau: 15").hkm_tau == 15)
        #expect(throws: (any Error).self) { try decode("new_chunk: zeros") }
        #expect(throws: (any Error).self) { try decode("timesteps: [999, 500, 333, 0]") }
        #expect(throws: (any Error).self) { try decode("warmup_frames: 8") }
        let error = try #require(throws: (any Error).self) { try decode("hkm_taus: 15") }
        #expect("\(error)".contains("hkm_taus") && "\(error)".contains("hkm_tau"))
        #expect(StreamConfig().windowTimesteps == [0, 0, 0, 0, 333, 333, 333, 333, 666, 666, 666, 666, 999, 999, 999, 999])
    }

    @Test func tailPaddingReflectsPingPong() {
        // frames.extend(frames[-13:-1][::-1]): after frame n−1 come n−2, n−3, …
        #expect((10..<14).map { Animator.reflect($0, count: 10) } == [8, 7, 6, 5])
        #expect((3..<8).map { Animator.reflect($0, count: 3) } == [1, 0, 1, 2, 1])
        #expect(Animator.reflect(5, count: 1) == 0)
    }

    /// A real driving clip at 30 fps with audio (LivePortrait d3.mp4), cut to 10 frames: every
    /// driving frame comes out once (10 is not a multiple of the chunk), at 30 fps, with the audio.
    @Test func animateKeepsFrameCountFpsAndAudio() throws {
        let dir = try InferencePaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try PersonaLiveModel.load(try writeTinyModel(in: dir))
        let driving = InferencePaths.media.appendingPathComponent("liveportrait/d3.mp4").path
        let reference = try ImageIO.read(InferencePaths.media.appendingPathComponent("liveportrait/s0.jpg").path)
        var options = AnimationOptions()
        options.maxFrames = 10
        options.grid = true
        let out = dir.appendingPathComponent("out.mp4").path
        let animator = Animator(pipeline: try StreamingPipeline(model: model))
        let summary = try animator.animate(reference: reference, drivingVideo: driving, output: out, options: options)
        #expect(summary.frames == 10 && summary.warmupFrames == 0)
        let video = try VideoReader(path: out)
        #expect(try video.frameCount() == 10)
        #expect(abs(video.fps - 30) < 1e-6)
        #expect(video.width == 4 * 64 && video.height == 64)
        #expect(video.hasAudio)
        #expect(abs(video.audioDuration - video.duration) < 0.1, "audio \(video.audioDuration) s vs video \(video.duration) s")

        // --keep-warmup adds the 12 transition frames in front (and drops the audio).
        options.keepWarmup = true
        options.grid = false
        let warm = dir.appendingPathComponent("warm.mp4").path
        let s2 = try Animator(pipeline: try StreamingPipeline(model: model))
            .animate(reference: reference, drivingVideo: driving, output: warm, options: options)
        #expect(s2.frames == 10 && s2.warmupFrames == 12)
        #expect(try VideoReader(path: warm).frameCount() == 22)
    }

    /// `pose extract` + `animate --pose --motion` gives the frames `animate --driving` gives.
    @Test func poseDataRoundTripMatchesVideoDriving() throws {
        let dir = try InferencePaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try PersonaLiveModel.load(try writeTinyModel(in: dir))
        let driving = InferencePaths.media.appendingPathComponent("liveportrait/d0.mp4").path
        let reference = try ImageIO.read(InferencePaths.media.appendingPathComponent("personalive-demo/ref_image.png").path)
        var options = AnimationOptions()
        options.maxFrames = 14
        let byVideo = dir.appendingPathComponent("video.mp4").path
        _ = try Animator(pipeline: try StreamingPipeline(model: model, seed: 3))
            .animate(reference: reference, drivingVideo: driving, output: byVideo, options: options)

        let (pose, motion) = try Animator.extractPose(video: driving, frontEnds: FrontEnds(model: model), chunkFrames: 4,
                                                      maxFrames: 14, logger: .init(label: "test"))
        #expect(pose.frames.count == 14 && motion.shape[0] == 14)
        let posePath = dir.appendingPathComponent("pose.json").path
        try pose.write(posePath)
        let reread = try PoseData.read(posePath)
        #expect(reread == pose, "the pose file does not round-trip exactly")
        let byPose = dir.appendingPathComponent("pose.mp4").path
        _ = try Animator(pipeline: try StreamingPipeline(model: model, seed: 3))
            .animate(reference: reference, pose: reread, motion: motion, output: byPose, options: options)
        let a = try decodedFrames(byVideo), b = try decodedFrames(byPose)
        #expect(a.count == 14 && b.count == 14)
        let worst = zip(a, b).map { x, y in zip(x, y).map { abs($0 - $1) }.max() ?? 0 }.max() ?? 0
        #expect(worst <= 2, "pose-driven frames differ from video-driven ones by up to \(worst)/255")

        // Without motion tokens the reference's expression stays: still a full-length video.
        let still = dir.appendingPathComponent("still.mp4").path
        let s = try Animator(pipeline: try StreamingPipeline(model: model, seed: 3))
            .animate(reference: reference, pose: reread, motion: nil, output: still, options: options)
        #expect(s.frames == 14)
    }

    @Test func badInputIsNamedAndLeavesNothing() throws {
        let dir = try InferencePaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let modelPath = try writeTinyModel(in: dir)
        let model = try PersonaLiveModel.load(modelPath)
        let reference = try ImageIO.read(InferencePaths.media.appendingPathComponent("liveportrait/s0.jpg").path)
        // A "video" with no decodable frame.
        let bogus = dir.appendingPathComponent("bogus.mp4")
        try Data("not a video".utf8).write(to: bogus)
        let out = dir.appendingPathComponent("out.mp4").path
        #expect(throws: (any Error).self) {
            try Animator(pipeline: try StreamingPipeline(model: model))
                .animate(reference: reference, drivingVideo: bogus.path, output: out, options: AnimationOptions())
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("out") || $0.hasSuffix(".tmp") }
        #expect(left.isEmpty, "left behind: \(left)")

        // Pose files: a missing field and a wrong shape are named with the frame index.
        func poseError(_ json: String) throws -> String {
            let p = dir.appendingPathComponent("p.json")
            try Data(json.utf8).write(to: p)
            return "\(try #require(throws: (any Error).self) { try PoseData.read(p.path) })"
        }
        let kp = Array(repeating: "[0,0,0]", count: 21).joined(separator: ",")
        let good = "{\"pitch\":0,\"yaw\":0,\"roll\":0,\"t\":[0,0,0],\"scale\":1,\"kp\":[\(kp)]}"
        let header = "\"format\":\"personalive-pose\",\"version\":1,\"fps\":25"
        #expect(try poseError("{\(header),\"frames\":[\(good),{\"pitch\":0,\"yaw\":0,\"t\":[0,0,0],\"scale\":1,\"kp\":[\(kp)]}]}")
            .contains("frames[1].roll"))
        #expect(try poseError("{\(header),\"frames\":[\(good),\(good),{\"pitch\":0,\"yaw\":0,\"roll\":0,\"t\":[0,0],\"scale\":1,\"kp\":[\(kp)]}]}")
            .contains("frames[2].t"))
        #expect(try poseError("{\"format\":\"personalive-pose\",\"version\":2,\"fps\":25,\"frames\":[\(good)]}").contains("version"))

        // A model folder missing a module names it.
        try FileManager.default.removeItem(at: dir.appendingPathComponent("pose_guider.safetensors"))
        let e = try #require(throws: (any Error).self) { try PersonaLiveModel.load(modelPath) }
        #expect("\(e)".contains("pose_guider"))
        #expect(throws: (any Error).self) { try PersonaLiveModel.load(dir.appendingPathComponent("nowhere").path) }
    }
}
