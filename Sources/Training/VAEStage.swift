// VAEStage.swift — trains the tiny AutoencoderKL of the embedded default on the synthetic data
// (reconstruction MSE + KL), since the pretrained sd-vae-ft-mse cannot be downloaded here.
import Data
import Foundation
import Inference
import Logging
import Media
import Models
import NN
import Torch

public struct VAEStageSection: Codable, Sendable {
    public var kl_weight: Double = 1e-6
    public var image_size: Int = 64
    /// Decode a sample of the posterior (true, the usual VAE objective) or its mean (deterministic:
    /// no random draw per step, e.g. for checking data-parallel runs against one process).
    public var sample_posterior = true
    enum K: String, CodingKey, CaseIterable { case kl_weight, image_size, sample_posterior }
    public init() {}
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: K.self)
        kl_weight = try c.value(.kl_weight, default: 1e-6)
        image_size = try c.value(.image_size, default: 64)
        sample_posterior = try c.value(.sample_posterior, default: true)
    }
}

public final class VAEStage: PairFedStage, TrainingStage {
    public let vae: AutoencoderKL
    let section: VAEStageSection

    public init(config: TrainingConfig, logger: Logger) throws {
        let precision = try Precision(solver: config.solver, logger: logger)
        let section = try ConfigLoader.section(VAEStageSection.self, config.stageSection, name: "vae", file: config.sourcePath)
        let vaeConfig = try ConfigLoader.section(AutoencoderKL.Config.self, config.model["vae"], name: "model.vae",
                                                 file: config.sourcePath)
        vae = try AutoencoderKL(vaeConfig)
        try precision.placeTrained(vae)
        self.section = section
        super.init(config: config, precision: precision,
                   feeds: try stageFeeds(config, dataset: DatasetReader(path: config.data.dataset, logger: logger),
                                         imageSize: section.image_size, device: precision.device))
    }

    public var savedModules: [(String, Module)] { [("vae", vae)] }
    public var trainableParameters: [(String, Tensor)] { vae.namedParameters().map { ("vae.\($0.0)", $0.1) } }

    public func losses(sample: Int, generator: Generator) throws -> [String: Tensor] {
        let x = try feed.batch(sample / batchSize).target
        let posterior = try vae.encode(x)
        let recon = try vae.decode(section.sample_posterior ? posterior.sample(generator: generator) : posterior.mode())
        let mse = try F.mseLoss(recon.to(.float32), x)
        let kl = try posterior.kl().mean()
        return ["loss": try mse + kl * section.kl_weight, "rec_mse": mse, "kl": kl]
    }

    /// Reconstruction PSNR (images in [-1, 1], peak-to-peak 2) of the posterior mean on val frames.
    public func validate(step: Int, directory: URL, logger: Logger) throws -> [String: Double] {
        let x = try valFeed.batch(0).target
        let recon = try vae.decode(vae.encode(x).mode()).to(.float32).clamp(min: -1, max: 1)
        let mse = try F.mseLoss(recon, x).item()
        let psnr = 10 * log10(4 / max(mse, 1e-12))
        let s = x.shape
        try ImageIO.write(RGBImage(width: 2 * s[3], height: s[0] * s[2], pixels: gridImage([x, recon])),
                          to: directory.appendingPathComponent("reconstructions.png").path)
        return ["psnr": psnr, "rec_mse": mse]
    }
}
