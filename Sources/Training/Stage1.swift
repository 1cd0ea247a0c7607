import Foundation
import Logging
import NN
import Torch
public struct Stage1Section: Codable, Sendable {}
final class Stage1: TrainingStage {
    init(config: TrainingConfig, logger: Logger) throws { throw TrainingError.invalid("x") }
    var savedModules: [(String, Module)] { [] }
    var trainableParameters: [(String, Tensor)] { [] }
    var batchSize: Int { 1 }
    func losses(sample: Int, generator: Generator) throws -> [String: Tensor] { [:] }
    func validate(step: Int, directory: URL, logger: Logger) throws -> [String: Double] { [:] }
}
