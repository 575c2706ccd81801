#!/usr/bin/env python3
"""Seeds the lab's EC2 emulator: one VPC and one subnet (with an IPv6 /64), N instances (one per node,
each with its primary ENI), M VPC Elastic IPs and K route tables in the VPC (tagged
Name=lab-rtb-<k>, k = 0..K-1, no routes but the VPC's local one), and one Route 53 hosted
zone `lab.internal.` with no records but its own. Instances keep AWS's default
SourceDestCheck=true (the lab turns it off afterwards). Prints JSON:

{"vpc_id":..., "subnet_id":..., "instances":[{"instance_id","eni","private_ip","az","mac"}],
 "allocations":[{"allocation_id","public_ip"}], "route_tables":["rtb-.."],
 "hosted_zone_id": "Z..", "zone": "lab.internal.", "subnet_ipv6_cidr": "2600:../64"}
"""
import argparse
import json
import sys

import boto3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--eips", type=int, default=1)
    ap.add_argument("--route-tables", type=int, default=0)
    ap.add_argument("--region", default="us-east-1")
    args = ap.parse_args()

    ec2 = boto3.client("ec2", endpoint_url=args.endpoint, region_name=args.region,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    az = args.region + "a"
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24",
                                  AvailabilityZone=az)["Subnet"]["SubnetId"]
    # The subnet's IPv6 /64: the first /64 of the VPC's /56, as AWS consoles propose.
    vpc6 = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"]
    import ipaddress
    subnet6 = str(next(ipaddress.ip_network(vpc6).subnets(new_prefix=64)))
    ec2.associate_subnet_cidr_block(SubnetId=subnet_id, Ipv6CidrBlock=subnet6)
    images = ec2.describe_images(Owners=["amazon"])["Images"]
    if not images:
        raise SystemExit("seed_ec2: DescribeImages(owners=amazon) returned nothing")
    ami = sorted(images, key=lambda i: i["ImageId"])[0]["ImageId"]

    instances = []
    for n in range(args.nodes):
        inst = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 SubnetId=subnet_id,
                                 TagSpecifications=[{"ResourceType": "instance",
                                                     "Tags": [{"Key": "Name", "Value": f"node{n}"}]}]
                                 )["Instances"][0]
        eni = sorted(inst["NetworkInterfaces"], key=lambda e: e["Attachment"]["DeviceIndex"])[0]
        instances.append({
            "instance_id": inst["InstanceId"],
            "eni": eni["NetworkInterfaceId"],
            "private_ip": eni.get("PrivateIpAddress") or inst.get("PrivateIpAddress"),
            "mac": eni.get("MacAddress") or "",
            "az": inst.get("Placement", {}).get("AvailabilityZone", az),
        })

    allocations = []
    for _ in range(args.eips):
        a = ec2.allocate_address(Domain="vpc")
        allocations.append({"allocation_id": a["AllocationId"], "public_ip": a["PublicIp"]})

    route_tables = []
    for k in range(args.route_tables):
        rt = ec2.create_route_table(
            VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "route-table",
                                "Tags": [{"Key": "Name", "Value": f"lab-rtb-{k}"}]}])
        route_tables.append(rt["RouteTable"]["RouteTableId"])

    r53 = boto3.client("route53", endpoint_url=args.endpoint, region_name=args.region,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    zone = r53.create_hosted_zone(Name="lab.internal.", CallerReference="corosync-eip-lab")
    hosted_zone_id = zone["HostedZone"]["Id"].split("/")[-1]

    json.dump({"vpc_id": vpc_id, "subnet_id": subnet_id, "ami": ami,
               "instances": instances, "allocations": allocations,
               "route_tables": route_tables, "hosted_zone_id": hosted_zone_id,
               "subnet_ipv6_cidr": subnet6,
               "zone": "lab.internal."}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
