// WeightSources.swift — lets any safetensors file or sharded index (Torch.WeightSource) feed
// Module.load, reading each tensor straight into the parameter's storage.
import Torch

public struct SafeTensorsSource: StateDictSource {
    public let source: any WeightSource
    public init(_ source: any WeightSource) { self.source = source }
    public init(path: String) throws { self.source = try openWeights(path: path) }
    public var sourceName: String { source.path }
    public var keys: [String] { source.keys }
    public func shape(of key: String) -> [Int]? { source.entry(key)?.shape }
    public func read(_ key: String, into tensor: Tensor) throws { try source.read(key, into: tensor) }
}
