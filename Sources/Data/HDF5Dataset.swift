// HDF5Dataset.swift — HDF5 datasets (h5py.Dataset): create chunked/deflated arrays, read and write
// whole arrays or hyperslabs (one frame of a (T,H,W,3) video), grow along the first axis, and
// one-dimensional string lists (h5py reads them as variable-length UTF-8 strings).
import CHDF5
import Foundation

public final class HDF5Dataset: HDF5AttributeOwner, @unchecked Sendable {
    public let file: HDF5File
    public let path: String
    let handle: H5Handle
    var objectID: hid_t { handle.id }

    init(file: HDF5File, path: String) throws {
        H5.silence()
        self.file = file
        self.path = path
        let id = H5Dopen2(file.handle.id, path, h5s_p_default())
        guard id >= 0 else { throw HDF5Error(file: file.path, object: path, "cannot open dataset (\(H5.reason()))") }
        handle = H5Handle(id)
    }

    init(file: HDF5File, path: String, id: hid_t) {
        self.file = file
        self.path = path
        handle = H5Handle(id)
    }

    private func fail(_ what: String) -> HDF5Error {
        HDF5Error(file: file.path, object: path, "\(what) (\(H5.reason()))")
    }

    /// Current shape.
    public var shape: [Int] {
        get throws {
            H5.silence()
            let space = H5Dget_space(handle.id)
            guard space >= 0 else { throw fail("cannot read the dataspace") }
            defer { H5.close(space) }
            let rank = H5Sget_simple_extent_ndims(space)
            guard rank >= 0 else { throw fail("cannot read the rank") }
            var dims = [hsize_t](repeating: 0, count: Int(rank))
            _ = H5Sget_simple_extent_dims(space, &dims, nil)
            return dims.map { Int($0) }
        }
    }

    /// Element type.
    public var dtype: HDF5DType {
        get throws {
            H5.silence()
            let t = H5Dget_type(handle.id)
            guard t >= 0 else { throw fail("cannot read the datatype") }
            defer { H5.close(t) }
            return HDF5DType(typeID: t)
        }
    }

    /// Chunk shape, or nil for contiguous storage.
    public var chunks: [Int]? {
        get throws {
            H5.silence()
            let dcpl = H5Dget_create_plist(handle.id)
            guard dcpl >= 0 else { throw fail("cannot read the creation properties") }
            defer { H5.close(dcpl) }
            guard H5Pget_layout(dcpl) == H5D_CHUNKED else { return nil }
            var dims = [hsize_t](repeating: 0, count: 32)
            let rank = H5Pget_chunk(dcpl, 32, &dims)
            guard rank >= 0 else { throw fail("cannot read the chunk shape") }
            return dims.prefix(Int(rank)).map { Int($0) }
        }
    }

    /// Bytes stored on disk for the data (after compression).
    public var storageSize: Int {
        Int(H5Dget_storage_size(handle.id))
    }

    // MARK: - Reading

    /// The whole array, converted by HDF5 to `T` (an integer/float conversion that cannot be
    /// represented throws); check `dtype` first when the exact stored type matters.
    public func read<T: HDF5Scalar>(_: T.Type = T.self) throws -> [T] {
        let n = try shape.reduce(1, *)
        var out = [T](repeating: T(), count: n)
        try out.withUnsafeMutableBytes { try readRaw(into: $0, as: T.hdf5DType, start: nil, count: nil) }
        return out
    }

    /// The hyperslab [start, start+count) (one frame: start [t,0,0,0], count [1,H,W,3]).
    public func read<T: HDF5Scalar>(_: T.Type = T.self, start: [Int], count: [Int]) throws -> [T] {
        var out = [T](repeating: T(), count: count.reduce(1, *))
        try out.withUnsafeMutableBytes { try readRaw(into: $0, as: T.hdf5DType, start: start, count: count) }
        return out
    }

    /// Reads a hyperslab (or everything) into caller memory of the right size.
    public func readRaw(into buffer: UnsafeMutableRawBufferPointer, as type: HDF5DType, start: [Int]?, count: [Int]?) throws {
        H5.silence()
        guard type.nativeType >= 0 else { throw HDF5Error(file: file.path, object: path, "cannot read as \(type)") }
        let (fileSpace, memSpace) = try selection(start: start, count: count)
        defer { H5.close(fileSpace); H5.close(memSpace) }
        let elements = Int(H5Sget_select_npoints(memSpace == h5s_s_all() ? fileSpace : memSpace))
        let needed = elements * Int(H5Tget_size(type.nativeType))
        guard buffer.count == needed else {
            throw HDF5Error(file: file.path, object: path, "read buffer holds \(buffer.count) bytes, the selection needs \(needed)")
        }
        guard H5Dread(handle.id, type.nativeType, memSpace, fileSpace, h5s_p_default(), buffer.baseAddress) >= 0 else {
            throw fail("read failed" + (start.map { " at \($0)" } ?? ""))
        }
    }

    /// Variable- or fixed-length strings of a 1-D (or scalar) string dataset.
    public func readStrings() throws -> [String] {
        H5.silence()
        let ftype = H5Dget_type(handle.id)
        guard ftype >= 0 else { throw fail("cannot read the datatype") }
        defer { H5.close(ftype) }
        guard H5Tget_class(ftype) == H5T_STRING else {
            throw HDF5Error(file: file.path, object: path, "expected strings, found \(HDF5DType(typeID: ftype))")
        }
        let space = H5Dget_space(handle.id)
        defer { H5.close(space) }
        let n = Int(H5Sget_simple_extent_npoints(space))
        return try HDF5Strings.read(count: n, fileType: ftype, what: "\(file.path): \(path)") { mem, buf in
            H5Dread(handle.id, mem, h5s_s_all(), h5s_s_all(), h5s_p_default(), buf)
        }
    }

    // MARK: - Writing

    /// Writes the whole array (its count must match the shape).
    public func write<T: HDF5Scalar>(_ values: [T]) throws {
        let n = try shape.reduce(1, *)
        guard values.count == n else {
            throw HDF5Error(file: file.path, object: path, "writing \(values.count) values into \(try shape) (\(n) elements)")
        }
        try values.withUnsafeBytes { try writeRaw($0, as: T.hdf5DType, start: nil, count: nil) }
    }

    /// Writes the hyperslab [start, start+count).
    public func write<T: HDF5Scalar>(_ values: [T], start: [Int], count: [Int]) throws {
        guard values.count == count.reduce(1, *) else {
            throw HDF5Error(file: file.path, object: path, "writing \(values.count) values into a \(count) slab")
        }
        try values.withUnsafeBytes { try writeRaw($0, as: T.hdf5DType, start: start, count: count) }
    }

    public func writeRaw(_ buffer: UnsafeRawBufferPointer, as type: HDF5DType, start: [Int]?, count: [Int]?) throws {
        H5.silence()
        let (fileSpace, memSpace) = try selection(start: start, count: count)
        defer { H5.close(fileSpace); H5.close(memSpace) }
        guard H5Dwrite(handle.id, type.nativeType, memSpace, fileSpace, h5s_p_default(), buffer.baseAddress) >= 0 else {
            throw fail("write failed" + (start.map { " at \($0)" } ?? ""))
        }
    }

    /// Grows (or shrinks) a chunked dataset created with a larger `maxShape`.
    public func resize(to newShape: [Int]) throws {
        H5.silence()
        let dims = newShape.map { hsize_t($0) }
        guard H5Dset_extent(handle.id, dims) >= 0 else { throw fail("cannot resize to \(newShape)") }
    }

    /// (file space with the selection, memory space) for a hyperslab, or (all, all).
    private func selection(start: [Int]?, count: [Int]?) throws -> (hid_t, hid_t) {
        let fileSpace = H5Dget_space(handle.id)
        guard fileSpace >= 0 else { throw fail("cannot read the dataspace") }
        guard let start, let count else { return (fileSpace, h5s_s_all()) }
        let rank = Int(H5Sget_simple_extent_ndims(fileSpace))
        var dims = [hsize_t](repeating: 0, count: rank)
        _ = H5Sget_simple_extent_dims(fileSpace, &dims, nil)
        guard start.count == rank, count.count == rank,
              zip(zip(start, count), dims).allSatisfy({ $0.0 >= 0 && $0.1 >= 0 && $0.0 + $0.1 <= Int($1) }) else {
            H5.close(fileSpace)
            throw HDF5Error(file: file.path, object: path, "slab start \(start) count \(count) is outside the shape \(dims.map { Int($0) })")
        }
        var s = start.map { hsize_t($0) }, c = count.map { hsize_t($0) }
        guard H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &s, nil, &c, nil) >= 0 else {
            H5.close(fileSpace)
            throw fail("cannot select the slab")
        }
        let memSpace = H5Screate_simple(Int32(rank), &c, nil)
        return (fileSpace, memSpace)
    }
}

extension HDF5Group {
    /// Creates a dataset. `maxShape` entries of nil make that axis growable (needs chunks);
    /// `deflate` 1...9 compresses chunks with zlib.
    @discardableResult
    public func createDataset(_ name: String, dtype: HDF5DType, shape: [Int], maxShape: [Int?]? = nil,
                              chunks: [Int]? = nil, deflate: Int? = nil) throws -> HDF5Dataset {
        H5.silence()
        let full = H5.join(path, name)
        guard dtype.fileType >= 0 else { throw HDF5Error(file: file.path, object: full, "cannot store \(dtype) as numbers") }
        var dims = shape.map { hsize_t($0) }
        var maxDims = (maxShape ?? shape.map { Optional($0) }).map { $0.map { hsize_t($0) } ?? h5s_s_unlimited() }
        guard maxDims.count == dims.count else {
            throw HDF5Error(file: file.path, object: full, "maxShape \(String(describing: maxShape)) does not match shape \(shape)")
        }
        let space = H5Screate_simple(Int32(dims.count), &dims, &maxDims)
        guard space >= 0 else { throw HDF5Error(file: file.path, object: full, "bad shape \(shape) (\(H5.reason()))") }
        defer { H5.close(space) }
        let dcpl = H5.creationPlist(h5s_p_dataset_create())
        defer { H5.close(dcpl) }
        if let chunks {
            guard chunks.count == shape.count, chunks.allSatisfy({ $0 > 0 }) else {
                throw HDF5Error(file: file.path, object: full, "chunk shape \(chunks) does not fit shape \(shape)")
            }
            var c = chunks.map { hsize_t($0) }
            _ = H5Pset_chunk(dcpl, Int32(c.count), &c)
            if let deflate { _ = H5Pset_deflate(dcpl, UInt32(max(0, min(9, deflate)))) }
        } else if deflate != nil || maxShape != nil {
            throw HDF5Error(file: file.path, object: full, "compression and growable axes need a chunk shape")
        }
        let id = H5Dcreate2(handle.id, name, dtype.fileType, space, h5s_p_default(), dcpl, h5s_p_default())
        guard id >= 0 else { throw HDF5Error(file: file.path, object: full, "cannot create dataset (\(H5.reason()))") }
        return HDF5Dataset(file: file, path: full, id: id)
    }

    /// Creates and fills a dataset in one call.
    @discardableResult
    public func writeDataset<T: HDF5Scalar>(_ name: String, values: [T], shape: [Int], chunks: [Int]? = nil,
                                            deflate: Int? = nil) throws -> HDF5Dataset {
        let d = try createDataset(name, dtype: T.hdf5DType, shape: shape, chunks: chunks, deflate: deflate)
        try d.write(values)
        return d
    }

    /// A 1-D dataset of variable-length UTF-8 strings (h5py: `f.create_dataset(name, data=[...], dtype=h5py.string_dtype())`).
    @discardableResult
    public func writeStrings(_ name: String, _ values: [String]) throws -> HDF5Dataset {
        H5.silence()
        let full = H5.join(path, name)
        var dims = [hsize_t(values.count)]
        let space = H5Screate_simple(1, &dims, nil)
        defer { H5.close(space) }
        let stype = HDF5Strings.variableType()
        defer { H5.close(stype) }
        let dcpl = H5.creationPlist(h5s_p_dataset_create())
        defer { H5.close(dcpl) }
        let id = H5Dcreate2(handle.id, name, stype, space, h5s_p_default(), dcpl, h5s_p_default())
        guard id >= 0 else { throw HDF5Error(file: file.path, object: full, "cannot create string dataset (\(H5.reason()))") }
        let d = HDF5Dataset(file: file, path: full, id: id)
        let status = HDF5Strings.withCStrings(values) { ptrs in
            H5Dwrite(id, stype, h5s_s_all(), h5s_s_all(), h5s_p_default(), ptrs)
        }
        guard status >= 0 else { throw HDF5Error(file: file.path, object: full, "cannot write strings (\(H5.reason()))") }
        return d
    }

    public func readStrings(_ name: String) throws -> [String] {
        try dataset(name).readStrings()
    }
}

/// String plumbing shared by datasets and attributes.
enum HDF5Strings {
    /// Variable-length UTF-8 string type (what h5py writes for Python str).
    static func variableType() -> hid_t {
        let t = H5Tcopy(h5s_t_c_s1())
        _ = H5Tset_size(t, h5s_t_variable())
        _ = H5Tset_cset(t, H5T_CSET_UTF8)
        return t
    }

    /// Calls `body` with an array of C string pointers valid for the call.
    static func withCStrings<R>(_ values: [String], _ body: (UnsafeMutableRawPointer) -> R) -> R {
        let cstrs = values.map { strdup($0) }
        defer { cstrs.forEach { free($0) } }
        var ptrs: [UnsafeMutablePointer<CChar>?] = cstrs
        return ptrs.withUnsafeMutableBytes { body($0.baseAddress!) }
    }

    /// Reads `count` strings stored with `fileType` (variable or fixed length) using `read(memType, buffer)`.
    static func read(count n: Int, fileType: hid_t, what: String, _ read: (hid_t, UnsafeMutableRawPointer) -> herr_t) throws -> [String] {
        if n == 0 { return [] }
        if H5Tis_variable_str(fileType) > 0 {
            let mem = variableType()
            defer { H5.close(mem) }
            var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: n)
            let status = ptrs.withUnsafeMutableBytes { read(mem, $0.baseAddress!) }
            guard status >= 0 else { throw HDF5Error(file: what, object: nil, "cannot read strings (\(H5.reason()))") }
            defer {
                // Variable-length data is allocated by HDF5 with the system allocator.
                for p in ptrs { if let p { H5free_memory(p) } }
            }
            return ptrs.map { $0.map { String(cString: $0) } ?? "" }
        }
        let size = H5Tget_size(fileType)
        let mem = H5Tcopy(h5s_t_c_s1())
        defer { H5.close(mem) }
        _ = H5Tset_size(mem, size)
        _ = H5Tset_strpad(mem, H5T_STR_NULLPAD)
        var bytes = [UInt8](repeating: 0, count: n * size)
        let status = bytes.withUnsafeMutableBytes { read(mem, $0.baseAddress!) }
        guard status >= 0 else { throw HDF5Error(file: what, object: nil, "cannot read strings (\(H5.reason()))") }
        return (0..<n).map { i in
            let slice = bytes[(i * size)..<((i + 1) * size)]
            let trimmed = slice.prefix { $0 != 0 }
            return String(decoding: trimmed, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        }
    }
}
