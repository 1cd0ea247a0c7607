// CheckpointImport.swift — `personalive checkpoint import SRC --out DIR [--kind unet|vae|clip|auto]`:
// converts a diffusers / transformers model folder or a .pth state dict into this toolkit's layout
// (Models.CheckpointImporter does the work; this only parses and reports).
import ArgumentParser
import Foundation
import Inference
import Models
import NN
import Torch
import Training

struct CheckpointImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Convert a diffusers/transformers model folder or a .pth state dict into <name>.safetensors + config.json.",
        discussion: """
            SRC is a model folder (config.json with diffusion_pytorch_model.safetensors, model.safetensors or \
            *.bin, sharded through *.index.json or not) or a single .safetensors/.bin/.pth file (its config.json \
            is read from the same folder, or --config; without one the kind's full-size default is used: \
            SD image-variations UNet, sd-vae-ft-mse, CLIP ViT-L/14). The weights are loaded strictly into the \
            module (every missing, unexpected or mis-shaped key is reported), written to a temporary folder, \
            loaded back, and only then renamed to DIR. Legacy VAE attention names (query/key/value/proj_attn) \
            are renamed; CLIP's old position_ids buffer is dropped.
            """)

    @Argument(help: "A model folder or a weights file.")
    var source: String

    @Option(name: .long, help: "The output folder (must not exist unless --force).")
    var out: String

    @Option(name: .long, help: """
        unet, vae, clip, denoising_unet, reference_unet, pose_guider, motion_encoder, motion_extractor,         temporal_module, discriminator or auto (PersonaLive release files are told by their names, e.g.         denoising_unet.pth; diffusers folders by their config's class name, else by the keys).
        """)
    var kind: String = "auto"

    @Option(name: .long, help: "PersonaLive modules: a model YAML (e.g. Configs/tiny/model.yaml) or a training config with a model: section; default: the paper size.")
    var modelConfig: String?

    @Option(name: .long, help: "Stored dtype of the output: float32, float16, bfloat16 or source (the source's dtype).")
    var dtype: String = "float32"

    @Option(name: .long, help: "Output file base name (default: unet, vae or image_encoder).")
    var name: String?

    @Option(name: .long, help: "A config.json to build the module from instead of the one beside the weights.")
    var config: String?

    @Flag(name: .long, help: "Replace DIR if it exists.")
    var force = false

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if kind != "auto" && CheckpointKind(rawValue: kind) == nil {
            throw ValidationError("--kind must be one of \(CheckpointKind.allCases.map(\.rawValue).joined(separator: ", ")) or auto (got '\(kind)')")
        }
        _ = try parsedDType()
        if let name, name.isEmpty || name.contains("/") {
            throw ValidationError("--name must be a plain file name (got '\(name)')")
        }
    }

    func parsedDType() throws -> CheckpointImporter.OutputDType {
        do { return try CheckpointImporter.OutputDType(parsing: dtype) } catch {
            throw ValidationError("--dtype: \(error)")
        }
    }

    func run() throws {
        let logger = try global.setUp(label: "checkpoint")
        let r: CheckpointImporter.Result
        do {
            if let k = CheckpointKind(rawValue: kind) ?? CheckpointKind(personaLiveFileName: source), k.isPersonaLive {
                var model: JSONValue?
                if let modelConfig {
                    let cfg = try ConfigLoader.load(JSONValue.self, path: modelConfig)
                    // A training config names or holds its model under `model:`.
                    if case .string(let path)? = cfg["model"] {
                        model = try ConfigLoader.load(JSONValue.self, path: path)
                    } else {
                        model = cfg["model"] ?? cfg
                    }
                }
                let rep = try PersonaLiveCheckpointImporter(kind: k, modelConfig: model, configPath: config,
                                                            outputDType: try parsedDType(), name: name, overwrite: force)
                    .importCheckpoint(source: source, outputDirectory: out)
                for note in rep.notes { logger.notice("\(note)") }
                if !rep.allowedMissing.isEmpty {
                    logger.notice("allowed missing keys (\(rep.allowedMissing.count)): \(rep.allowedMissing.prefix(5).joined(separator: ", "))")
                }
                r = rep.result
            } else {
                r = try CheckpointImporter(kind: CheckpointKind(rawValue: kind), outputDType: try parsedDType(),
                                           name: name, configPath: config, overwrite: force)
                    .run(source: source, outputDirectory: out)
            }
        } catch {
            throw CLIError("checkpoint import failed: \(error)")
        }
        if r.usedDefaultConfig {
            logger.warning("no config.json found; built the full-size default \(r.kind.className) config")
        }
        let dtypes = r.sourceDTypes.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key) ×\($0.value)" }
        print("imported \(r.kind.className): \(r.tensorCount) tensors, \(r.parameterCount) parameters")
        print("  source dtypes: \(dtypes.isEmpty ? "-" : dtypes.joined(separator: ", ")); written as \(r.outputDType)")
        if !r.renamed.isEmpty { print("  renamed \(r.renamed.count) legacy keys (e.g. \(r.renamed[0].0) → \(r.renamed[0].1))") }
        if !r.ignored.isEmpty { print("  ignored \(r.ignored.count) keys: \(r.ignored.prefix(5).joined(separator: ", "))") }
        print("  \(r.weightsFile)")
        print("  \(r.configFile)")
    }
}
