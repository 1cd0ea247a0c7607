// Pth.swift — PyTorch .pth state dicts (torch.load / torch.save of a dict of tensors), through
// LibTorch's own unpickler. Anything but a (nested) dict of tensors is refused.
import CTorch
import Foundation

public enum Pth {
    /// Loads a `torch.save(state_dict)` file. Nested dicts are flattened with '.'; a single
    /// top-level wrapper such as `state_dict` or `module` is unwrapped.
    public static func load(path: String) throws -> [(String, Tensor)] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw TorchError("\(path): no such file")
        }
        var list = tc_named_tensors(count: 0, names: nil, tensors: nil)
        guard tc_pth_load(path, &list) == 0 else {
            throw TorchError("\(path): not a PyTorch state dict: \(String(cString: tc_last_error()))")
        }
        defer { tc_named_tensors_free(&list) }
        var out: [(String, Tensor)] = []
        for i in 0..<Int(list.count) {
            let name = String(cString: list.names[i]!)
            var alias: OpaquePointer?
            try check(tc_shallow_clone(list.tensors[i], &alias))
            out.append((name, Tensor(owning: alias!)))
        }
        for wrapper in ["state_dict", "module", "model"] {
            let prefix = wrapper + "."
            if !out.isEmpty, out.allSatisfy({ $0.0.hasPrefix(prefix) }) {
                out = out.map { (String($0.0.dropFirst(prefix.count)), $0.1) }
            }
        }
        return out
    }

    /// Writes a dict of tensors loadable with `torch.load` (temporary file, then rename).
    public static func save(_ tensors: [(String, Tensor)], to path: String) throws {
        let tmp = path + ".tmp-\(getpid())"
        let names = tensors.map { strdup($0.0) }
        defer { names.forEach { free($0) } }
        let cnames: [UnsafePointer<CChar>?] = names.map { UnsafePointer($0) }
        let hs: [OpaquePointer?] = tensors.map { $0.1.handle }
        let rc = withExtendedLifetime(tensors) { tc_pth_save(tmp, cnames, hs, Int64(hs.count)) }
        if rc != 0 {
            let msg = String(cString: tc_last_error())
            unlink(tmp)
            throw TorchError("\(path): \(msg)")
        }
        guard rename(tmp, path) == 0 else {
            unlink(tmp)
            throw TorchError("\(path): rename failed: \(String(cString: strerror(errno)))")
        }
    }
}
