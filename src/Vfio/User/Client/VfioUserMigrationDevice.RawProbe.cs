using Vfio.Conformance;
using Vfio.Migration;
using Vfio.Uapi;
using Vfio.User.Protocol;

namespace Vfio.User.Client;

// vfio-mig check's robustness group over vfio-user: well-framed but invalid requests on the live
// connection. Each must get an error reply (vfio-user.md §6, §8), and the server must keep serving.
public sealed partial class VfioUserMigrationDevice
{
    private const string RawRule = "robustness.raw-messages";

    /// <inheritdoc/>
    public async ValueTask<IReadOnlyList<ConformanceResult>> RunRawMessageChecksAsync(CancellationToken cancellationToken = default)
    {
        var region = new byte[RegionAccessPayload.Length];
        new RegionAccessPayload(0, 0xdeadbeef, 8).Encode(region);
        var shortArgsz = new byte[VfioDeviceFeature.Size + VfioDeviceFeatureMigState.Size];
        new VfioDeviceFeature(4, (uint)VfioDeviceFeatureId.MigDeviceState | (uint)VfioDeviceFeatureFlags.Get).Encode(shortArgsz);
        var badFlags = new byte[VfioDeviceFeature.Size + VfioDeviceFeatureMigState.Size];
        new VfioDeviceFeature((uint)badFlags.Length, (uint)VfioDeviceFeatureId.MigDeviceState | (uint)VfioDeviceFeatureFlags.Get | 0x0100_0000).Encode(badFlags);

        (string What, VfioUserCommand Command, byte[] Payload)[] probes =
        [
            ("unknown command 200", (VfioUserCommand)200, new byte[8]),
            ("REGION_READ without a payload", VfioUserCommand.RegionRead, []),
            ("REGION_READ of region 0xdeadbeef", VfioUserCommand.RegionRead, region),
            ("DEVICE_FEATURE with argsz 4", VfioUserCommand.DeviceFeature, shortArgsz),
            ("DEVICE_FEATURE with an unknown flag bit", VfioUserCommand.DeviceFeature, badFlags),
            ("MIG_DATA_READ outside a saving state", VfioUserCommand.MigDataRead, VfioUserClient.MigDataReadRequest(4096)),
        ];

        var passed = new List<string>();
        var failed = new List<string>();
        foreach (var (what, command, payload) in probes)
        {
            try
            {
                using var reply = await Client.RequestAsync(command, payload, null, cancellationToken).ConfigureAwait(false);
                failed.Add($"{what} was accepted (expected an error reply)");
            }
            catch (VfioException ex) when (ex.Errno is not Errno.ENOTCONN and not Errno.ECONNRESET and not Errno.EPIPE)
            {
                passed.Add($"{what}: {VfioException.NameOf(ex.Errno)}");
            }
            catch (VfioException ex)
            {
                failed.Add($"{what}: the server dropped the connection ({ex.Message})");
                break;
            }
        }

        // The server must still serve this client and the device must be untouched.
        try
        {
            var state = await GetStateAsync(cancellationToken).ConfigureAwait(false);
            if (state != VfioMigrationState.Running)
                failed.Add($"after the probes the device is in {MigrationStateMachine.Name(state)}, not RUNNING");
        }
        catch (VfioException ex)
        {
            failed.Add($"after the probes GET device_state failed: {ex.Message}");
        }

        var spec = ConformanceCatalog.Get(RawRule).Spec;
        return failed.Count == 0
            ? [new ConformanceResult(ConformanceGroups.Robustness, RawRule, spec, ConformanceVerdict.Pass, string.Join("; ", passed) + "; the connection kept serving")]
            : [new ConformanceResult(ConformanceGroups.Robustness, RawRule, spec, ConformanceVerdict.Fail, string.Join("; ", failed))];
    }
}
