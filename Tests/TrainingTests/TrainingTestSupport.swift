// TrainingTestSupport.swift — paths, the CLI binary, a small synthetic dataset and tiny configs
// for the training tests.
import Foundation
import Testing

enum TrainingTestPaths {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The `personalive` binary built beside this test bundle (same scratch path and LibTorch).
    static var binary: URL? {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let c = dir.appendingPathComponent("personalive")
            if FileManager.default.isExecutableFile(atPath: c.path) { return c }
            dir = dir.deletingLastPathComponent()
        }
        let fallback = packageRoot.appendingPathComponent(".build/debug/personalive")
        return FileManager.default.isExecutableFile(atPath: fallback.path) ? fallback : nil
    }

    static var python: String? {
        let p = ProcessInfo.processInfo.environment["PERSONALIVE_PYTHON"]
            ?? packageRoot.appendingPathComponent(".venv/bin/python").path
        return FileManager.default.isExecutableFile(atPath: p) ? p : nil
    }
}

/// Runs the CLI to completion; returns (status, combined output).
@discardableResult
func runCLI(_ args: [String], in dir: URL) throws -> (Int32, String) {
    let bin = try #require(TrainingTestPaths.binary, "build the personalive product first (make test does)")
    let p = Process()
    p.executableURL = bin
    p.arguments = args
    p.currentDirectoryURL = dir
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// A scratch folder with a small synthetic dataset at Datasets/synth.h5.
func scratchWithDataset(clips: Int = 6, frames: Int = 16) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pl-tt-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir.appendingPathComponent("Datasets"), withIntermediateDirectories: true)
    let (status, out) = try runCLI(["dataset", "synth", "--out", "Datasets/synth.h5", "--clips", "\(clips)",
                                    "--frames", "\(frames)", "--size", "64", "--seed", "3"], in: dir)
    #expect(status == 0, "dataset synth failed: \(out)")
    return dir
}

/// A tiny VAE config (few steps, frequent checkpoints) for CLI-level tests.
func tinyVAEConfig(steps: Int, checkpointEvery: Int, run: String = "vae") -> String {
    """
    stage: vae
    run_name: \(run)
    seed: 1
    model:
      vae:
        in_channels: 3
        out_channels: 3
        down_block_types: [DownEncoderBlock2D, DownEncoderBlock2D, DownEncoderBlock2D, DownEncoderBlock2D]
        up_block_types: [UpDecoderBlock2D, UpDecoderBlock2D, UpDecoderBlock2D, UpDecoderBlock2D]
        block_out_channels: [8, 8, 16, 16]
        layers_per_block: 1
        latent_channels: 4
        norm_num_groups: 4
    data:
      dataset: Datasets/synth.h5
      train_bs: 2
      sample_margin: 2
    solver:
      learning_rate: 1.0e-3
      max_train_steps: \(steps)
    validation:
      validation_steps: 0
      num_samples: 2
    checkpointing:
      checkpointing_steps: \(checkpointEvery)
      keep_last: 3
    vae:
      image_size: 64
    """
}
