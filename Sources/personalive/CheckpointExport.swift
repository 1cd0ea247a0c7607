// CheckpointExport.swift — `personalive checkpoint export SRC --out FILE.pth [--kind K] [--module NAME]`:
// writes one of our module files (safetensors) as a PyTorch .pth state dict that the reference code
// loads with torch.load + load_state_dict(strict=True). Models.PersonaLiveCheckpointExporter does
// the work (checking keys and shapes against the module first); this only parses and reports.
import ArgumentParser
import Foundation
import Inference
import Models
import NN
import Torch
import Training

struct CheckpointExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a module file (<name>.safetensors) as a .pth state dict PyTorch loads with strict=True.",
        discussion: """
            SRC is a module file (e.g. Checkpoints/run/checkpoint-600/denoising_unet.safetensors, or one that \
            `checkpoint import` wrote) or a folder holding module files, with --module NAME picking one \
            (optimizer.safetensors and ema.safetensors are not modules). The module kind comes from --kind, \
            else from the file name, else from <name>.json beside it. Its config comes from --model-config \
            (a model.yaml, a training config with a model: section, or one module's section), else from \
            <name>.json beside the file, else from the folder's config.yaml (training checkpoints), else the \
            paper size. Keys and shapes are checked strictly against that module (what PyTorch's strict load \
            will check), then every tensor is written with its stored dtype and shape, in the module's \
            state_dict order, to a temporary file renamed to FILE.pth and read back.
            """)

    @Argument(help: "A module .safetensors file, or a folder with --module.")
    var source: String

    @Option(name: .long, help: "The .pth file to write (must not exist unless --force).")
    var out: String

    @Option(name: .long, help: "The module file to export from a folder SRC (e.g. denoising_unet).")
    var module: String?

    @Option(name: .long, help: "The module kind: \(CheckpointKind.personaLiveKinds.map(\.rawValue).joined(separator: ", ")) (default: from the file name).")
    var kind: String?

    @Option(name: .long, help: "A model config (YAML or JSON) to build the module from.")
    var modelConfig: String?

    @Flag(name: .long, help: "Copy the keys without checking them against the module.")
    var noCheck = false

    @Flag(name: .long, help: "Replace FILE.pth if it exists.")
    var force = false

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if let kind, CheckpointKind(rawValue: kind).map({ !$0.isPersonaLive }) ?? true {
            throw ValidationError("--kind must be one of \(CheckpointKind.personaLiveKinds.map(\.rawValue).joined(separator: ", ")) (got '\(kind)')")
        }
        guard !out.isEmpty else { throw ValidationError("--out must name a file") }
    }

    func run() throws {
        _ = try global.setUp(label: "checkpoint")
        do {
            let weights = try PersonaLiveCheckpointExporter.resolve(source: source, module: module)
            var config: JSONValue?
            var configLabel: String?
            if let modelConfig {
                config = try ConfigLoader.load(JSONValue.self, path: modelConfig)
                configLabel = modelConfig
            } else {
                // A training checkpoint folder: its config.yaml holds the model sections.
                let dir = (weights as NSString).deletingLastPathComponent
                let beside = (weights as NSString).deletingPathExtension + ".json"
                let runConfig = (dir as NSString).appendingPathComponent("config.yaml")
                if !FileManager.default.fileExists(atPath: beside), FileManager.default.fileExists(atPath: runConfig) {
                    config = try ConfigLoader.load(JSONValue.self, path: runConfig)
                    configLabel = runConfig
                }
            }
            let exporter = PersonaLiveCheckpointExporter(kind: kind.flatMap(CheckpointKind.init(rawValue:)),
                                                         modelConfig: config, check: !noCheck, overwrite: force)
            let r = try exporter.export(weightsPath: weights, to: out)
            let dtypes = r.dtypes.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key) ×\($0.value)" }
            print("exported \(r.tensorCount) tensors (\(dtypes.joined(separator: ", "))) from \(r.source)")
            if r.checked, let k = r.kind {
                print("  checked against \(k.rawValue) built from \(configLabel ?? r.configSource ?? "-")")
            } else {
                print("  not checked against a module (--no-check)")
            }
            print("  \(r.output)  (torch.load + load_state_dict(strict=True))")
        } catch let e as ValidationError {
            throw e
        } catch {
            throw CLIError("checkpoint export failed: \(error)")
        }
    }
}
