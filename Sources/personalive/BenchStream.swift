// BenchStream.swift — `personalive bench stream --config tiny|sd15|MODEL.yaml`: the whole streaming
// pipeline of `animate` (detector, face crops, motion encoder, keypoint render, PoseGuider, one
// denoiser window pass, DDIM step, VAE decode) on random weights and random driving frames: per-call
// latency (median, p95), frames per second, and peak RSS after 100 frames and at the end (their ratio
// shows whether memory grows with the stream). The baseline, measured in the same run, is the
// denoiser's window pass alone; every 4th call runs under no_grad instead of inference mode, for
// the ratio of the two. Prints, never asserts.
import ArgumentParser
import Foundation
import Inference
import Models
import NN
import Torch

struct BenchStreamCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stream",
        abstract: "Streaming pipeline per call (4 frames): latency, FPS and peak RSS after 100 frames and at the end, against the denoiser pass.")

    @Option(help: "tiny, sd15 (Configs/<name>/model.yaml) or a model.yaml path.") var config: String = "tiny"
    @Option(help: "Driving frames to stream (after 4 warm-up calls).") var frames: Int = 2000
    @Option(help: "cpu, cuda or cuda:N (default: cuda when available).") var device: String?
    @Option(help: "float32, float16 or bfloat16 (default: float16 on CUDA, float32 on CPU).") var dtype: String?
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard frames >= 100 else { throw ValidationError("--frames must be at least 100 (the first RSS reading)") }
    }

    func run() throws {
        let logger = try global.setUp(label: "bench")
        let root = packageRootForConfigs()
        let path = try BenchDenoiserCommand.modelPath(config, root: root)
        let dev = try device.map(Device.init(parsing:)) ?? (Torch.cudaIsAvailable ? .cuda(0) : .cpu)
        let dt = try BenchDenoiserCommand.parseDType(dtype, device: dev)
        let model = try PersonaLiveModel.random(modelYAML: path, device: dev, dtype: dt)
        let s = model.settings
        print("LibTorch \(Torch.runtimeVersion), \(Torch.numThreads) threads, \(dev), \(dt); config \(path)")
        print("frames \(s.image_size)², latents \(s.image_size / 8)², window \(s.stream.windowFrames) frames; "
              + String(format: "peak RSS after loading %.0f MiB", peakRSSMiB()))

        let pipeline = try StreamingPipeline(model: model, seed: 0, logger: logger)
        let m = pipeline.chunkFrames
        let g = try Generator(seed: 1)
        func chunk() throws -> DrivingChunk {
            try pipeline.frontEnds.drivingChunk(Tensor.rand([m, 3, s.image_size, s.image_size], generator: g).to(dev, dt) * 2 - 1)
        }
        func sync() throws { if case .cuda(let i) = dev { try Torch.cudaSynchronize(i) } }
        try pipeline.setReference(pipeline.frontEnds.encodeReference(Tensor.rand([1, 3, s.image_size, s.image_size], generator: g) * 2 - 1))

        // Warm-up calls (the first builds the motion-interpolated start).
        for _ in 0..<4 { _ = try pipeline.process(chunk()) }
        // Every 4th call runs under no_grad instead of inference mode: the ablation, interleaved.
        var latencies: [Double] = [], noGradLatencies: [Double] = []
        var rss100 = 0.0
        let calls = frames / m
        let total = try time {
            for i in 0..<calls {
                let c = try chunk()
                pipeline.inferenceMode = i % 4 != 3
                let seconds = try time {
                    _ = try pipeline.process(c)
                    try sync()
                }
                if pipeline.inferenceMode { latencies.append(seconds) } else { noGradLatencies.append(seconds) }
                if (i + 1) * m >= 100 && rss100 == 0 { rss100 = peakRSSMiB() }
            }
        }
        let rssEnd = peakRSSMiB()

        // Baseline: the denoiser's window pass alone, same window.
        let shape = [1, model.denoiser.config.in_channels, s.stream.windowFrames, s.image_size / 8, s.image_size / 8]
        let x = try Tensor.randn(shape, generator: g).to(dev, dt)
        let t = try Tensor(s.stream.windowTimesteps as [Int64], shape: [s.stream.windowFrames]).to(dev)
        let clip = try pipeline.reference!.clip
        let motion = try Tensor.randn([1, s.stream.windowFrames, model.motionEncoder.config.tokens, model.motionEncoder.config.out_ch],
                                      generator: g).to(dev, dt)
        let pose = try Tensor.randn([1, model.denoiser.config.block_out_channels[0]] + shape.dropFirst(2), generator: g).to(dev, dt)
        let passes = min(20, max(3, calls / 10))
        let denoiser = try Torch.noGrad {
            try time {
                for _ in 0..<passes { _ = try model.denoiser(x, timesteps: t, clip: clip, motion: motion, poseCond: pose) }
                try sync()
            } / Double(passes)
        }

        let sorted = latencies.sorted()
        let median = sorted[sorted.count / 2], p95 = sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.95))]
        let noGradMedian = noGradLatencies.sorted()[noGradLatencies.count / 2]
        print(String(format: "baseline   denoiser window pass alone: %8.1f ms", denoiser * 1e3))
        print(String(format: "stream     %d frames in %d calls: median %.1f ms, p95 %.1f ms per call (%.2f× the denoiser pass); %.1f FPS",
                     calls * m, calls, median * 1e3, p95 * 1e3, median / denoiser, Double(calls * m) / total))
        print(String(format: "           inference mode against no_grad (every 4th call, %d calls): median %.1f ms against %.1f ms, ratio %.3f",
                     noGradLatencies.count, median * 1e3, noGradMedian * 1e3, median / noGradMedian))
        print(String(format: "memory     peak RSS after 100 frames %.0f MiB, after %d frames %.0f MiB: ratio %.3f (target <= 1.05)",
                     rss100, calls * m, rssEnd, rssEnd / max(rss100, 1)))
        if dev != .cpu { print("(peak RSS is host memory; GPU memory is not included)") }
    }
}
