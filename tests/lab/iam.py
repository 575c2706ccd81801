#!/usr/bin/env python3
"""IAM helpers for the lab's EC2 emulator (moto), run inside the emulator's netns.

    iam.py --endpoint URL user NAME POLICY_JSON   -> {"access_key_id": .., "secret_access_key": ..}
    iam.py --endpoint URL enforce on|off

`user` creates an IAM user with one inline policy and an access key (the lab's own root keys
sign the IAM calls, so it works with enforcement on or off). `enforce on` makes the emulator
check every later request against IAM (moto's INITIAL_NO_AUTH_ACTION_COUNT, set through
/moto-api/reset-auth); `off` stops it.
"""
import argparse
import json
import os
import sys
import urllib.request

import boto3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("user")
    u.add_argument("name")
    u.add_argument("policy")
    e = sub.add_parser("enforce")
    e.add_argument("state", choices=["on", "off"])
    args = ap.parse_args()

    if args.cmd == "enforce":
        data = b"0" if args.state == "on" else b"inf"
        # not form-encoded: flask would swallow the body into request.form
        req = urllib.request.Request(args.endpoint + "/moto-api/reset-auth", data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=10) as r:
            print(r.read().decode())
        return 0

    iam = boto3.client(
        "iam",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id=os.environ.get("LAB_ROOT_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("LAB_ROOT_SECRET_ACCESS_KEY", "testing"),
    )
    iam.create_user(UserName=args.name)
    iam.put_user_policy(UserName=args.name, PolicyName=args.name + "-policy", PolicyDocument=args.policy)
    key = iam.create_access_key(UserName=args.name)["AccessKey"]
    print(json.dumps({"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
