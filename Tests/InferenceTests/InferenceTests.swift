// InferenceTests.swift — the inference layer end to end on a small random PersonaLive model written
// as a model.yaml with weights: animation from a real driving video (frame count, fps, audio),
// driving by pose data (the round trip through `pose extract` gives the same frames), the stream's
// warm-up and tail padding, and the errors for bad input (named, nothing left behind).
import Foundation
@testable import Inference
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

/// A tiny PersonaLive model (Configs/tiny/model.yaml) with random weights, written as a model.yaml
/// naming a safetensors file per module, so loading goes through the model-file loader.
func writeTinyModel(in dir: URL) throws -> String {
    let source = InferencePaths.packageRoot.appendingPathComponent("Configs/tiny/model.yaml").path
    try Torch.manualSeed(5)
    return try PersonaLiveModel.random(modelYAML: source).writeModelFile(in: dir, architecture: source)
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

    /// `pose extract` + `animate --pose --motion` gives the frames `animate --driving` gives (compared
    /// before video encoding: x264 turns a one-level input difference into larger local ones).
    @Test func poseDataRoundTripMatchesVideoDriving() throws {
        let dir = try InferencePaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try PersonaLiveModel.load(try writeTinyModel(in: dir))
        let driving = InferencePaths.media.appendingPathComponent("liveportrait/d0.mp4").path
        let reference = try ImageIO.read(InferencePaths.media.appendingPathComponent("personalive-demo/ref_image.png").path)
        func generated(_ source: DrivingSource) throws -> Tensor {
            let animator = Animator(pipeline: try StreamingPipeline(model: model, seed: 3))
            try animator.pipeline.setReference(reference)
            var frames: [Tensor] = []
            try animator.stream(source: source, keepWarmup: false) { frames.append($0.image) }
            return try Tensor.stack(frames, dim: 0)
        }
        let byVideo = try generated(VideoDrivingSource(path: driving, frontEnds: FrontEnds(model: model), maxFrames: 14,
                                                       logger: .init(label: "test")))

        let (pose, motion) = try Animator.extractPose(video: driving, frontEnds: FrontEnds(model: model), chunkFrames: 4,
                                                      maxFrames: 14, logger: .init(label: "test"))
        #expect(pose.frames.count == 14 && motion.shape[0] == 14)
        let posePath = dir.appendingPathComponent("pose.json").path
        try pose.write(posePath)
        let reread = try PoseData.read(posePath)
        #expect(reread == pose, "the pose file does not round-trip exactly")
        let byPose = try generated(PoseDrivingSource(data: reread, motion: motion, maxFrames: nil, device: .cpu, dtype: .float32))
        #expect(byVideo.shape == [14, 3, 64, 64] && byPose.shape == byVideo.shape)
        let worst = try (byVideo - byPose).abs().max().item()
        #expect(worst <= 1e-5, "pose-driven frames differ from video-driven ones by up to \(worst)")

        // Without motion tokens the reference's expression stays: still every frame, as a video.
        let still = dir.appendingPathComponent("still.mp4").path
        let s = try Animator(pipeline: try StreamingPipeline(model: model, seed: 3))
            .animate(reference: reference, pose: reread, motion: nil, output: still, options: AnimationOptions())
        #expect(s.frames == 14)
        #expect(try VideoReader(path: still).frameCount() == 14)
    }

    /// A run folder as `personalive train` writes it: the newest complete checkpoint is used, trained
    /// modules come from it, frozen ones from the checkpoints its config names, the latent scale from
    /// trainer_state.json; what is missing is named.
    @Test func runFolderLoadsLatestCheckpointAndNamesWhatIsMissing() throws {
        let dir = try InferencePaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let yaml = InferencePaths.packageRoot.appendingPathComponent("Configs/tiny/model.yaml").path
        let model = try ConfigLoader.load(JSONValue.self, path: yaml)
        try Torch.manualSeed(9)
        let m = try PersonaLiveModel.random(modelYAML: yaml)
        func checkpoint(_ folder: URL, stage: String, section: String, modules: [(String, Module)], pipeline: String?) throws {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for (name, module) in modules {
                try SafeTensors.write(module.stateDict(), to: folder.appendingPathComponent("\(name).safetensors").path)
            }
            let config: JSONValue = .object(["stage": .string(stage), "model": model,
                                             stage: try ConfigLoader.decode(JSONValue.self, yaml: section, file: "section")])
            try YAMLText.encode(config).write(to: folder.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
            try "{\"stage\": \"\(stage)\", \"step\": 1\(pipeline.map { ", \"pipeline\": \($0)" } ?? "")}"
                .write(to: folder.appendingPathComponent("trainer_state.json"), atomically: true, encoding: .utf8)
        }
        let vae = dir.appendingPathComponent("vae/checkpoint-5"), me = dir.appendingPathComponent("me/checkpoint-5")
        try checkpoint(vae, stage: "vae", section: "{}", modules: [("vae", m.vae)], pipeline: nil)
        try checkpoint(me, stage: "motion_extractor", section: "{}", modules: [("motion_extractor", m.motionExtractor)], pipeline: nil)
        let run = dir.appendingPathComponent("run")
        let section = "{vae_checkpoint: \(vae.path), motion_extractor_checkpoint: \(me.path), image_size: 64, motion_encoder_size: 64, motion_extractor_size: 64, latent_scale: 0}"
        let trained: [(String, Module)] = [("denoising_unet", m.denoiser), ("reference_unet", m.reference), ("pose_guider", m.poseGuider),
                                           ("motion_encoder", m.motionEncoder), ("image_encoder", m.imageEncoder)]
        try checkpoint(run.appendingPathComponent("checkpoint-10"), stage: "stage1", section: section, modules: trained,
                       pipeline: "{\"latent_scale\": 0.7}")
        // An older, and an incomplete newer checkpoint (no trainer_state.json): both passed over.
        try checkpoint(run.appendingPathComponent("checkpoint-4"), stage: "stage1", section: section, modules: [], pipeline: nil)
        try FileManager.default.createDirectory(at: run.appendingPathComponent("checkpoint-20"), withIntermediateDirectories: true)

        let loaded = try PersonaLiveModel.load(run.path)
        #expect(loaded.settings.latent_scale == 0.7 && loaded.settings.image_size == 64)
        #expect(loaded.sources.contains { $0.hasPrefix("denoising_unet: ") && $0.contains("checkpoint-10") })
        #expect(!loaded.hasTemporalModules)
        let w = try #require(loaded.poseGuider.namedParameters().first).1
        #expect(try (w - #require(m.poseGuider.namedParameters().first).1).abs().max().item() == 0)

        // Without the recorded scale (older checkpoints) and a configured one: a clear refusal.
        try "{\"stage\": \"stage1\", \"step\": 10}".write(to: run.appendingPathComponent("checkpoint-10/trainer_state.json"),
                                                           atomically: true, encoding: .utf8)
        #expect("\(try #require(throws: (any Error).self) { try PersonaLiveModel.load(run.path) })".contains("latent scale"))
        // A missing trained module is named.
        try FileManager.default.removeItem(at: run.appendingPathComponent("checkpoint-10/motion_encoder.safetensors"))
        try "{\"stage\": \"stage1\", \"step\": 10, \"pipeline\": {\"latent_scale\": 0.7}}"
            .write(to: run.appendingPathComponent("checkpoint-10/trainer_state.json"), atomically: true, encoding: .utf8)
        #expect("\(try #require(throws: (any Error).self) { try PersonaLiveModel.load(run.path) })".contains("motion_encoder"))
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
