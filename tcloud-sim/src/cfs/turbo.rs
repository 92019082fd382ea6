//! The rules CreateCfsFileSystem applies only to CFS Turbo file systems (`StorageType` TB or TP,
//! `Protocol` TURBO): the CCN network (`CcnId`, `CidrBlock`) and the `Capacity` minimum and step.
//! Pure checks over request values: no state, no I/O. The Turbo root directory a file system
//! exports under is the data plane's (`dataplane`).
//!
//! Error codes. A missing `CcnId` or `CidrBlock` is the common `MissingParameter`, as the
//! simulator answers any other absent required parameter: the documented codes of
//! CreateCfsFileSystem have no CCN counterpart of `InvalidParameterValue.MissingVpcParameter`. A
//! malformed one is the plain `InvalidParameterValue`, for the same reason. A bad `Capacity` is
//! the documented `InvalidParameterValue.InvalidTurboCapacity`.

use super::model::{StorageType, check_cidr, well_formed_id};
use crate::error::ApiError;

/// The CCN a Turbo file system is reached through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CcnNetwork {
    pub ccn_id: String,
    pub cidr_block: String,
}

/// Checks `CcnId` (`ccn-xxxxxxxx`) and `CidrBlock` (see [`check_cidr`]); `None` or `""` is
/// missing.
pub(super) fn plan_ccn(
    ccn_id: Option<&str>,
    cidr_block: Option<&str>,
) -> Result<CcnNetwork, ApiError> {
    let (Some(ccn), Some(cidr)) = (given(ccn_id), given(cidr_block)) else {
        return Err(ApiError::new(
            "MissingParameter",
            "A CCN file system needs CcnId and CidrBlock.",
        ));
    };
    if !well_formed_id(ccn, "ccn-") {
        return Err(ApiError::invalid_value(format!(
            "CcnId {ccn:?} is not a CCN ID (ccn-xxxxxxxx)."
        )));
    }
    check_cidr(cidr)?;
    Ok(CcnNetwork {
        ccn_id: ccn.to_owned(),
        cidr_block: cidr.to_owned(),
    })
}

/// An optional argument, with `""` treated as absent.
fn given(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// The `Capacity` (GiB) a file system of `storage_type` gets: `None` for the general-purpose
/// types (their `Capacity` is ignored, as the API documents it is "turbo系列必填" only), required
/// and checked against [`StorageType::turbo_capacity_rule`] for the Turbo types.
pub(super) fn plan_capacity(
    storage_type: StorageType,
    capacity: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    let Some((min, step)) = storage_type.turbo_capacity_rule() else {
        return Ok(None);
    };
    let capacity = capacity.ok_or_else(|| {
        ApiError::new(
            "InvalidParameterValue.InvalidTurboCapacity",
            format!(
                "Capacity is required for {}: at least {min} GiB, in steps of {step} GiB.",
                storage_type.as_str()
            ),
        )
    })?;
    if capacity < min || !capacity.is_multiple_of(step) {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidTurboCapacity",
            format!(
                "Capacity {capacity} GiB is not valid for {}: at least {min} GiB, in steps of {step} GiB.",
                storage_type.as_str()
            ),
        ));
    }
    Ok(Some(capacity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_follow_the_documented_minimum_and_step() {
        let cases = [
            (StorageType::Sd, None, Some(None)),
            (StorageType::Hp, Some(5), Some(None)),
            (StorageType::Tb, Some(40_960), Some(Some(40_960))),
            (StorageType::Tb, Some(61_440), Some(Some(61_440))),
            (StorageType::Tb, Some(20_480), None),
            (StorageType::Tb, Some(51_200), None),
            (StorageType::Tb, None, None),
            (StorageType::Tp, Some(20_480), Some(Some(20_480))),
            (StorageType::Tp, Some(30_720), Some(Some(30_720))),
            (StorageType::Tp, Some(10_240), None),
            (StorageType::Tp, Some(25_600), None),
            (StorageType::Tp, Some(0), None),
        ];
        for (ty, asked, expected) in cases {
            match (plan_capacity(ty, asked), expected) {
                (Ok(got), Some(want)) => assert_eq!(got, want, "{ty:?} {asked:?}"),
                (Err(e), None) => {
                    assert_eq!(e.code, "InvalidParameterValue.InvalidTurboCapacity");
                }
                (got, want) => panic!("{ty:?} {asked:?}: {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn the_ccn_network_needs_both_fields_well_formed() {
        let ok = plan_ccn(Some("ccn-abc12345"), Some("10.8.0.0/24")).unwrap();
        assert_eq!(ok.ccn_id, "ccn-abc12345");
        assert_eq!(ok.cidr_block, "10.8.0.0/24");
        for (ccn, cidr, code) in [
            (None, Some("10.8.0.0/24"), "MissingParameter"),
            (Some(""), Some("10.8.0.0/24"), "MissingParameter"),
            (Some("ccn-abc12345"), None, "MissingParameter"),
            (
                Some("vpc-abc12345"),
                Some("10.8.0.0/24"),
                "InvalidParameterValue",
            ),
            (
                Some("ccn-abc12345"),
                Some("10.8.0.0"),
                "InvalidParameterValue",
            ),
            (
                Some("ccn-abc12345"),
                Some("10.0.0.0/8"),
                "InvalidParameterValue",
            ),
            (
                Some("ccn-abc12345"),
                Some("10.8.0.0/25"),
                "InvalidParameterValue",
            ),
        ] {
            assert_eq!(
                plan_ccn(ccn, cidr).unwrap_err().code,
                code,
                "{ccn:?} {cidr:?}"
            );
        }
    }
}
