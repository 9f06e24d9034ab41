//! Which `RegionId`s exist. A call naming a region that does not exist answers
//! `InvalidRegionId.NotFound`; a real region without instances simply lists nothing (which is
//! what a wrong-but-real region looks like to a client).
//!
//! The built-in list is Alibaba Cloud's public ECS regions: the `DescribeRegions` answer kept in
//! the repository `aliyun/alibabacloud-ecs-tool-troubleshooter`
//! (`ecs-devops-dashboard/src/app/static/data/DescribeRegions.ts`, 29 regions), plus
//! `me-central-1` (Riyadh), `na-south-1` (Mexico) and `cn-shanghai-finance-1`, whose ECS
//! endpoints (`ecs.<region>.aliyuncs.com`) appear in public client code. Regions used by seeded
//! instances and those given with `--region` are known as well.

use std::collections::BTreeSet;

pub const PUBLIC_REGIONS: &[&str] = &[
    "cn-qingdao",
    "cn-beijing",
    "cn-zhangjiakou",
    "cn-huhehaote",
    "cn-wulanchabu",
    "cn-hangzhou",
    "cn-shanghai",
    "cn-nanjing",
    "cn-shenzhen",
    "cn-heyuan",
    "cn-guangzhou",
    "cn-fuzhou",
    "cn-wuhan-lr",
    "cn-chengdu",
    "cn-hongkong",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ap-south-1",
    "us-east-1",
    "us-west-1",
    "eu-west-1",
    "eu-central-1",
    "me-east-1",
    "me-central-1",
    "na-south-1",
    "cn-shanghai-finance-1",
];

/// The regions the simulator answers for, besides those of the seeded instances (the store
/// keeps those).
#[derive(Debug, Default, Clone)]
pub struct Regions {
    /// From `--region`: known for the simulator's whole life, also after `POST /_sim/reset`.
    configured: BTreeSet<String>,
}

impl Regions {
    pub fn new(configured: impl IntoIterator<Item = String>) -> Self {
        Regions {
            configured: configured.into_iter().collect(),
        }
    }

    /// A built-in or configured region (seeded regions are checked by the caller).
    pub fn contains(&self, region: &str) -> bool {
        PUBLIC_REGIONS.contains(&region) || self.configured.contains(region)
    }

    /// The built-in and configured regions, sorted.
    pub fn all(&self) -> BTreeSet<String> {
        PUBLIC_REGIONS
            .iter()
            .map(|r| (*r).to_owned())
            .chain(self.configured.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_and_configured() {
        let regions = Regions::new(["xx-test-1".to_owned()]);
        for known in ["cn-hangzhou", "ap-southeast-1", "us-east-1", "xx-test-1"] {
            assert!(regions.contains(known), "{known}");
        }
        for unknown in ["cn-atlantis", "", "CN-HANGZHOU", "cn-hangzhou-a"] {
            assert!(!regions.contains(unknown), "{unknown}");
        }
        let unique: BTreeSet<&str> = PUBLIC_REGIONS.iter().copied().collect();
        assert_eq!(unique.len(), PUBLIC_REGIONS.len());
        assert!(regions.all().contains("xx-test-1"));
    }
}
