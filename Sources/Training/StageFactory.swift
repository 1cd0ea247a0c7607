// StageFactory.swift — builds the stage a config names, and runs the checks `train` runs first.
import Foundation
import Inference
import Logging
import NN
import Torch

public enum StageFactory {
    /// Files the stage will read, with the config key that names each.
    public static func requiredFiles(_ c: TrainingConfig) -> [(key: String, path: String)] {
        var files: [(String, String)] = [("data.dataset", c.data.dataset)]
        if case .object(let section) = c.stageSection {
            for (k, v) in section.sorted(by: { $0.key < $1.key }) where k.hasSuffix("_checkpoint") || k.hasSuffix("_path") {
                if let p = v.string, !p.isEmpty { files.append(("\(c.stage).\(k)", p)) }
            }
        }
        return files
    }

    /// Everything `train` checks before it starts; throws listing every problem.
    public static func validate(_ c: TrainingConfig, logger: Logger) throws {
        let problems = problems(c)
        if !problems.isEmpty {
            throw ConfigError(file: c.sourcePath, "invalid config:\n  " + problems.joined(separator: "\n  "))
        }
    }

    /// The problems `validate` reports, each naming its key; `checkFiles: false` skips the checks
    /// that referenced files exist.
    public static func problems(_ c: TrainingConfig, checkFiles: Bool = true) -> [String] {
        var problems = c.problems(requiredFiles: checkFiles ? requiredFiles(c) : [])
        // Decoding the stage's own sections strictly catches their unknown keys and types too.
        do {
            switch c.stage {
            case "vae":
                _ = try ConfigLoader.section(VAEStageSection.self, c.stageSection, name: "vae", file: c.sourcePath)
            case "motion_extractor":
                _ = try ConfigLoader.section(MotionExtractorStageSection.self, c.stageSection, name: "motion_extractor",
                                             file: c.sourcePath)
            case "unet":
                _ = try ConfigLoader.section(UNetStageSection.self, c.stageSection, name: "unet", file: c.sourcePath)
            case "stage1":
                _ = try ConfigLoader.section(Stage1Section.self, c.stageSection, name: "stage1", file: c.sourcePath)
            case "stage2":
                _ = try ConfigLoader.section(Stage2Section.self, c.stageSection, name: "stage2", file: c.sourcePath)
            case "stage3":
                _ = try ConfigLoader.section(Stage3Section.self, c.stageSection, name: "stage3", file: c.sourcePath)
            default:
                problems.append("stage '\(c.stage)' is unknown")
            }
        } catch {
            problems.append("\(error)")
        }
        return problems
    }

    /// Builds the stage; its parameters are initialised from a generator seeded by the config, so
    /// the same config gives the same initial weights in any process.
    public static func make(_ c: TrainingConfig, logger: Logger) throws -> TrainingStage {
        try RandomContext.with(try Generator(seed: c.seed &+ 1)) { try build(c, logger: logger) }
    }

    static func build(_ c: TrainingConfig, logger: Logger) throws -> TrainingStage {
        switch c.stage {
        case "vae": return try VAEStage(config: c, logger: logger)
        case "motion_extractor": return try MotionExtractorStage(config: c, logger: logger)
        case "unet": return try UNetStage(config: c, logger: logger)
        case "stage1": return try Stage1(config: c, logger: logger)
        case "stage2": return try Stage2(config: c, logger: logger)
        case "stage3": return try Stage3(config: c, logger: logger)
        default: throw ConfigError(file: c.sourcePath, "stage '\(c.stage)' is unknown")
        }
    }
}
