// Torch.swift — process-wide LibTorch settings and version information (torch.__version__,
// torch.set_num_threads, torch.manual_seed, torch.cuda.is_available).
import CTorch

public enum Torch {
    /// LibTorch version of the headers this binary was compiled against.
    public static var headerVersion: String { String(cString: tc_header_version()) }

    /// LibTorch version of the library loaded at run time ("" when it cannot be told).
    public static var runtimeVersion: String {
        var buf = [CChar](repeating: 0, count: 64)
        guard tc_runtime_version(&buf, 64) == 0 else { return "" }
        return String(cString: buf)
    }

    /// Throws when the loaded LibTorch is not the one the headers describe (major.minor differ):
    /// mixing them crashes or hangs, so say so clearly at start-up.
    public static func checkVersion() throws {
        let h = headerVersion, r = runtimeVersion
        guard !r.isEmpty else { return }
        let hm = h.split(separator: ".").prefix(2), rm = r.split(separator: ".").prefix(2)
        if hm != rm {
            throw TorchError("""
                LibTorch version mismatch: built against headers \(h) but loaded library \(r). \
                Rebuild with the same LIBTORCH that is loaded at run time (or unset LIBTORCH for Debian's).
                """)
        }
    }

    public static var cudaIsAvailable: Bool {
        var r: Int32 = 0
        _ = tc_cuda_is_available(&r)
        return r != 0
    }

    public static var cudaDeviceCount: Int {
        var r: Int32 = 0
        _ = tc_cuda_device_count(&r)
        return Int(r)
    }

    public static func cudaSynchronize(_ device: Int = 0) throws { try check(tc_cuda_synchronize(Int32(device))) }

    public static var numThreads: Int {
        get {
            var r: Int32 = 0
            _ = tc_get_num_threads(&r)
            return Int(r)
        }
    }

    public static func setNumThreads(_ n: Int) throws { try check(tc_set_num_threads(Int32(n))) }

    /// Seeds the global CPU generator (torch.manual_seed).
    public static func manualSeed(_ seed: UInt64) throws { try check(tc_manual_seed(seed)) }
}
