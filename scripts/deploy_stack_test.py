"""The CloudFormation stack, created in an AWS emulator, with the real worker against it.

    .venv/bin/python scripts/deploy_stack_test.py [TRAILWATCH_BINARY]   (default target/debug/trailwatch)

Starts moto_server on a free loopback port and creates deploy/cloudformation/trailwatch.yaml
there: the full template, with its defaults, the EventBridge wiring and a KMS key for the
trail. moto's CloudFormation creates the queues, the EventBridge rule, the alert topic,
the log group, the IAM roles and policies, the security group and the ECS cluster, task
definition and service, and the test checks their settings. moto has no CloudFormation
support for AWS::SQS::QueuePolicy, AWS::SNS::Subscription, AWS::ApplicationAutoScaling::*
and AWS::CloudWatch::Alarm: it skips them and still reports CREATE_COMPLETE, so for those
this test only checks, from the template, that every alarm on a TrailWatch metric names a
metric and dimension the worker really publishes, and tries the e-mail subscription's
filter policy on SQS subscriptions of its own.

Then, as in an account:
  - the trail bucket sends its events to EventBridge, the sample CloudTrail files are
    uploaded under AWSLogs/ (and one object outside the prefix, which the rule must not
    forward), and the stack's rule delivers "Object Created" events to the stack's queue;
  - the worker runs with the credentials of the stack's task role (sts:AssumeRole), with
    moto enforcing IAM from then on, so the run fails if the role lacks something the
    worker needs; the role is also shown to be denied objects outside the prefix and the
    dead-letter queue;
  - `trailwatch run --until-idle 5s`, with TRAILWATCH_QUEUE_URL from the stack outputs,
    must print exactly the alerts `trailwatch scan` finds in the same files with the same
    rules (6 with the rules bundled when this was written), leave both queues empty and
    publish its metrics.
deploy/iam-policy.json must say what the task role says. A second stack with the
CloudTrailSNS wiring checks that variant's conditions (moto cannot deliver through its
subscription).

moto's IAM enforcement matches actions and resource ARNs for SQS and S3 only (any other
service is checked against "*") and ignores condition keys, so the sns:Publish resource
and the namespace condition on PutMetricData are not exercised here. The worker prints
its alerts instead of also publishing them as the task definition's TRAILWATCH_SINKS
says (checked as text): with enforcement on, moto refuses the SDK's PublishBatch calls
with SignatureDoesNotMatch, though it takes its SQS and S3 calls. The SNS sink and
TRAILWATCH_SINKS' `;min_severity=` run against moto without enforcement in
tests/worker.rs. Everything listens and connects on 127.0.0.1 only.
"""

import ast
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import botocore.exceptions
import yaml

import awslocal
from awslocal import free_port, metric_sum

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "cloudformation" / "trailwatch.yaml"
SAMPLES = ROOT / "tests" / "data" / "seed"
REGION = "us-east-1"
BUCKET = "example-trail-logs"
# moto's account: the stack's own, which owns the trail bucket here.
ACCOUNT = "123456789012"


def fail(msg):
    print(f"deploy stack test: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def wait_until(what, pred, timeout=30.0):
    awslocal.wait_until(what, pred, fail, timeout)


def load_template():
    """The template as plain data, short-form intrinsics as {"Fn::X": ...}."""

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader, suffix, node):
        name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    Loader.add_multi_constructor("!", intrinsic)
    return yaml.load(TEMPLATE.read_text(), Loader=Loader)


class Moto:
    """A moto_server on a free loopback port."""

    def __init__(self):
        self.log = tempfile.TemporaryFile()
        self.proc, self.port, self.endpoint = awslocal.start_moto(fail, log=self.log)

    def client(self, service, creds=None):
        creds = creds or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION, **creds)

    def enforce_iam(self, on):
        """From now on, check every request against the caller's IAM policies (or stop)."""
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0" if on else b"inf",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            check(r.status == 200, "moto did not accept /moto-api/reset-auth")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def create_stack(cf, name, params):
    cf.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
    )
    cf.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    stack = cf.describe_stacks(StackName=name)["Stacks"][0]
    check(stack["StackStatus"] == "CREATE_COMPLETE", f"stack {name}: {stack['StackStatus']}")
    resources = {
        r["LogicalResourceId"]: r
        for r in cf.list_stack_resources(StackName=name)["StackResourceSummaries"]
        if r["LogicalResourceId"]
    }
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}, resources


def check_stack(moto, outputs, resources, kms_key_arn, topic_min_severity):
    """What moto created is what the template says; returns the task role's policies."""
    sqs, ecs, iam, events = (moto.client(s) for s in ("sqs", "ecs", "iam", "events"))
    for key in ("QueueUrl", "DeadLetterQueueUrl", "AlertTopicArn", "LogGroupName"):
        check(outputs.get(key), f"output {key} missing")

    attrs = sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    redrive = json.loads(attrs["RedrivePolicy"])
    check(redrive["deadLetterTargetArn"] == dlq["QueueArn"], "the queue's redrive does not target the DLQ")
    check(int(redrive["maxReceiveCount"]) == 5, f"maxReceiveCount {redrive['maxReceiveCount']}, want 5")
    check(attrs.get("SqsManagedSseEnabled") == "true", "queue without SSE")
    check(dlq.get("SqsManagedSseEnabled") == "true", "DLQ without SSE")
    check(dlq["MessageRetentionPeriod"] == "1209600", "DLQ retention is not 14 days")

    rule = resources["TrailObjectCreatedRule"]["PhysicalResourceId"]
    pattern = json.loads(events.describe_rule(Name=rule)["EventPattern"])
    check(pattern["detail"]["bucket"]["name"] == [BUCKET], f"rule pattern {pattern}")
    targets = events.list_targets_by_rule(Rule=rule)["Targets"]
    check([t["Arn"] for t in targets] == [attrs["QueueArn"]], f"rule targets {targets}")

    td = ecs.describe_task_definition(taskDefinition=resources["TaskDefinition"]["PhysicalResourceId"])
    c = td["taskDefinition"]["containerDefinitions"][0]
    env = {e["name"]: e["value"] for e in c["environment"]}
    check(env["TRAILWATCH_QUEUE_URL"] == outputs["QueueUrl"], f"task environment {env}")
    check(
        env["TRAILWATCH_SINKS"] == f"stdout,sns:{outputs['AlertTopicArn']};min_severity={topic_min_severity}",
        f"task environment {env}",
    )
    check(env["TRAILWATCH_BUCKETS"] == BUCKET, f"task environment {env}")
    check(env["TRAILWATCH_EXPECTED_BUCKET_OWNER"] == ACCOUNT, f"task environment {env}")
    check(env["TRAILWATCH_HEALTH_LISTEN"].startswith("127.0.0.1:"), f"task environment {env}")
    check(c.get("readonlyRootFilesystem") is True, "container root file system is writable")
    check(c.get("user") == "10001:10001", f"container user {c.get('user')}")
    check(
        c["healthCheck"]["command"] == ["CMD", "/usr/local/bin/trailwatch", "healthcheck"],
        f"container health check {c['healthCheck']['command']}",
    )
    check(c["logConfiguration"]["options"]["awslogs-group"] == outputs["LogGroupName"], "log group")

    role = resources["TaskRole"]["PhysicalResourceId"]
    docs = {
        name: role_policy(iam, role, name) for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
    }
    statements = [s for doc in docs.values() for s in doc["Statement"]]
    by_sid = {s["Sid"]: s for s in statements}
    check(by_sid["ConsumeQueue"]["Resource"] == attrs["QueueArn"], f"{by_sid['ConsumeQueue']}")
    check(
        by_sid["ReadTrailLogs"]["Resource"] == f"arn:aws:s3:::{BUCKET}/AWSLogs/*",
        f"{by_sid['ReadTrailLogs']}",
    )
    check(
        by_sid["ReadTrailLogs"].get("Condition") == {"StringEquals": {"s3:ResourceAccount": ACCOUNT}},
        f"{by_sid['ReadTrailLogs']}",
    )
    check(by_sid["DecryptTrailLogs"]["Resource"] == kms_key_arn, f"{by_sid['DecryptTrailLogs']}")
    check(
        by_sid["DecryptTrailLogs"].get("Condition") == {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}},
        f"{by_sid['DecryptTrailLogs']}",
    )
    check(by_sid["PublishAlerts"]["Resource"] == outputs["AlertTopicArn"], f"{by_sid['PublishAlerts']}")
    check(
        set(by_sid) == {"ConsumeQueue", "ReadTrailLogs", "DecryptTrailLogs", "PublishAlerts", "PutMetrics"},
        f"task role statements {sorted(by_sid)}",
    )
    return docs


def check_all_created(template, resources):
    """Every resource moto supports was created (moto skips the others without a word)."""
    unsupported = {
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::Subscription",
        "AWS::CloudWatch::Alarm",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
    }
    for name, res in template["Resources"].items():
        if res["Type"] not in unsupported:
            check(name in resources, f"{name} ({res['Type']}) was not created")


def role_policy(iam, role, name):
    doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    # moto's CloudFormation keeps inline policies as Python objects and returns their repr.
    return doc if isinstance(doc, dict) else ast.literal_eval(doc)


def prepare_role_for_moto_iam(iam, role, docs):
    """Two moto quirks, so that its IAM enforcement judges the role as AWS would:
    policies that moto's CloudFormation stored as Python objects are stored again as
    JSON (enforcement can only read JSON), and the CloudWatch statement is repeated
    under moto's action name, "monitoring:" (the signing name) for "cloudwatch:"."""
    for name, doc in docs.items():
        iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(doc))
    aliases = [
        dict(s, Sid=s["Sid"] + "MotoName", Action=s["Action"].replace("cloudwatch:", "monitoring:"))
        for doc in docs.values()
        for s in doc["Statement"]
        if isinstance(s["Action"], str) and s["Action"].startswith("cloudwatch:")
    ]
    iam.put_role_policy(
        RoleName=role,
        PolicyName="moto-action-names",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": aliases}),
    )


def check_host_policy(statements, kms_key_arn):
    """deploy/iam-policy.json (for instance roles) says what the stack's task role says."""

    def arn_part(arn, i):
        return arn.split(":")[i]

    queue, topic = (
        next(s["Resource"] for s in statements if s["Sid"] == sid)
        for sid in ("ConsumeQueue", "PublishAlerts")
    )
    values = {
        "REGION": REGION,
        "ACCOUNT_ID": arn_part(queue, 4),
        "QUEUE_NAME": arn_part(queue, 5),
        "BUCKET": BUCKET,
        "PREFIX": "AWSLogs/",
        "KMS_KEY_ID": kms_key_arn.split("/")[-1],
        "TOPIC_NAME": arn_part(topic, 5),
    }
    text = (ROOT / "deploy" / "iam-policy.json").read_text()
    for k in sorted(values, key=len, reverse=True):
        text = text.replace(k, values[k])

    def norm(statement):
        s = dict(statement)
        s["Action"] = sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        return json.dumps(s, sort_keys=True)

    host = sorted(map(norm, json.loads(text)["Statement"]))
    task = sorted(map(norm, statements))
    check(host == task, f"deploy/iam-policy.json differs from the task role:\n{host}\n{task}")


def check_queue_policy(template):
    """moto skips AWS::SQS::QueuePolicy: from the template, only the stack's rule or
    topic may send to the queue, and everyone else is denied."""
    statements = template["Resources"]["QueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    deny = next((s for s in statements if isinstance(s, dict) and s.get("Sid") == "DenyOtherSenders"), None)
    check(deny is not None, f"no DenyOtherSenders statement in the queue policy: {statements}")
    check(
        deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "sqs:SendMessage",
        f"DenyOtherSenders: {deny}",
    )
    senders = deny["Condition"]["ArnNotEquals"]["aws:SourceArn"]["Fn::If"]
    check(
        senders == ["UseEventBridge", {"Fn::GetAtt": "TrailObjectCreatedRule.Arn"}, {"Ref": "TrailTopicArn"}],
        f"DenyOtherSenders exempts {senders}",
    )


def check_email_filter(moto, template, topic_arn):
    """The e-mail subscription's filter (for the default severity), tried in moto.

    moto cannot evaluate "$or" on message bodies, so each branch is subscribed as a
    policy of its own: together they must let through exactly the alert at or above
    the severity and the alarm notification.
    """
    sqs, sns = moto.client("sqs"), moto.client("sns")
    props = template["Resources"]["AlertEmailSubscription"]["Properties"]
    branches = props["FilterPolicy"]["$or"]
    check(
        branches[0]["severity"]
        == {"Fn::FindInMap": ["SeverityAtLeast", {"Ref": "AlertEmailMinSeverity"}, "Levels"]},
        f"unexpected FilterPolicy {props['FilterPolicy']}",
    )
    branches = [{"severity": template["Mappings"]["SeverityAtLeast"]["medium"]["Levels"]}, branches[1]]
    messages = [
        {"rule_id": "r", "severity": "info"},
        {"rule_id": "r", "severity": "high"},
        {"AlarmName": "a", "NewStateValue": "ALARM"},
    ]
    inboxes = []
    for i, policy in enumerate(branches):
        inbox = sqs.create_queue(QueueName=f"filter-inbox-{i}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={
                "FilterPolicyScope": props["FilterPolicyScope"],
                "FilterPolicy": json.dumps(policy),
                "RawMessageDelivery": "true",
            },
        )
        inboxes.append(inbox)
    for body in messages:
        sns.publish(TopicArn=topic_arn, Message=json.dumps(body))
    got = []
    for inbox in inboxes:
        while msgs := sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            for m in msgs:
                got.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=inbox, ReceiptHandle=m["ReceiptHandle"])
    check(
        sorted(map(json.dumps, got)) == sorted(map(json.dumps, messages[1:])),
        f"e-mail filter let through {got}",
    )


def run_worker(binary, moto, outputs, creds):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRAILWATCH_"))}
    env.update(
        AWS_ENDPOINT_URL=moto.endpoint,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID=creds["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=creds["aws_secret_access_key"],
        AWS_SESSION_TOKEN=creds["aws_session_token"],
        AWS_EC2_METADATA_DISABLED="true",
        TRAILWATCH_QUEUE_URL=outputs["QueueUrl"],
        TRAILWATCH_BUCKETS=BUCKET,
        TRAILWATCH_EXPECTED_BUCKET_OWNER=ACCOUNT,
        TRAILWATCH_SINKS="stdout",
        TRAILWATCH_RULES=str(ROOT / "rules"),
        TRAILWATCH_HEALTH_LISTEN=f"127.0.0.1:{free_port()}",
        TRAILWATCH_LOG="info",
        NO_COLOR="1",
    )
    started = time.monotonic()
    try:
        p = subprocess.run(
            [binary, "run", "--until-idle", "5s"], env=env, capture_output=True, text=True, timeout=180
        )
    except subprocess.TimeoutExpired:
        fail("the worker did not exit within 180 s")
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        fail(f"the worker exited with {p.returncode}")
    for needle in ("AccessDenied", "file failed", "kept for redelivery"):
        if needle in p.stderr:
            sys.stderr.write(p.stderr[-4000:])
            fail(f"the worker logged {needle!r}")
    print(f"deploy stack test: the worker drained the queue in {time.monotonic() - started:.0f} s")
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def expected_alerts(binary):
    """What the offline path of the same binary finds in the same files with the same
    rules (alert ids are deterministic): the worker must find exactly that. With the
    rules bundled in the repository at the time of writing that is 6 alerts."""
    p = subprocess.run(
        [binary, "scan", "--rules", str(ROOT / "rules"), str(SAMPLES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        fail(f"trailwatch scan of the samples exited with {p.returncode}")
    return sorted(json.loads(line)["alert_id"] for line in p.stdout.splitlines() if line.strip())


def denied(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        # moto answers SQS's JSON protocol with an XML error, which boto3 reports by status.
        return e.response["ResponseMetadata"]["HTTPStatusCode"] == 403 and "AccessDenied" in str(e)
    return False


def check_alarm_metrics(cw, template):
    """Every alarm on a TrailWatch metric watches a metric (and dimension) the worker sent."""
    for name, res in template["Resources"].items():
        p = res["Properties"]
        if res["Type"] != "AWS::CloudWatch::Alarm" or p["Namespace"] != "TrailWatch":
            continue
        sent = cw.list_metrics(Namespace="TrailWatch", MetricName=p["MetricName"])["Metrics"]
        check(sent, f"alarm {name}: the worker sends no {p['MetricName']}")
        for d in p.get("Dimensions", []):
            check(
                any(x["Name"] == d["Name"] for m in sent for x in m.get("Dimensions", [])),
                f"alarm {name}: the worker sends no {p['MetricName']} by {d['Name']}",
            )


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "trailwatch")
    check(os.access(binary, os.X_OK), f"no trailwatch binary at {binary}")
    template = load_template()
    moto = Moto()
    try:
        s3, sqs, cf, ec2, kms, sts, iam, cw = (
            moto.client(s) for s in ("s3", "sqs", "cloudformation", "ec2", "kms", "sts", "iam", "cloudwatch")
        )
        vpc = next(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if v.get("IsDefault"))
        subnets = [
            s["SubnetId"]
            for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        ]
        key_arn = kms.create_key(Description="trail log encryption")["KeyMetadata"]["Arn"]
        s3.create_bucket(Bucket=BUCKET)

        # --- the stack --------------------------------------------------------------
        outputs, resources = create_stack(
            cf,
            "trailwatch",
            {
                "TrailBucketName": BUCKET,
                "TrailKmsKeyArn": key_arn,
                "ContainerImage": "trailwatch:test",
                "VpcId": vpc,
                "SubnetIds": ",".join(subnets[:2]),
                "AlertTopicMinSeverity": "high",
            },
        )
        check_all_created(template, resources)
        task_policies = check_stack(moto, outputs, resources, key_arn, "high")
        check_host_policy([s for doc in task_policies.values() for s in doc["Statement"]], key_arn)
        check_email_filter(moto, template, outputs["AlertTopicArn"])
        check_queue_policy(template)
        print(f"deploy stack test: stack created in moto, {len(resources)} resources")

        # --- trail files arrive ---------------------------------------------------------
        # The one-time bucket setting the template cannot make: events to EventBridge.
        s3.put_bucket_notification_configuration(
            Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        files = sorted(p for p in SAMPLES.rglob("*") if p.is_file())
        for f in files:
            s3.upload_file(str(f), BUCKET, str(f.relative_to(SAMPLES)))
        s3.put_object(Bucket=BUCKET, Key="reports/not-a-trail-file.json", Body=b"{}")
        queued = sqs.get_queue_attributes(
            QueueUrl=outputs["QueueUrl"], AttributeNames=["ApproximateNumberOfMessages"]
        )
        queued = int(queued["Attributes"]["ApproximateNumberOfMessages"])
        check(queued == len(files), f"{queued} notifications queued for {len(files)} files under AWSLogs/")
        print(f"deploy stack test: {len(files)} files uploaded, {queued} EventBridge events in the queue")

        # --- the worker, as the task role -------------------------------------------------
        task_role = resources["TaskRole"]["PhysicalResourceId"]
        prepare_role_for_moto_iam(iam, task_role, task_policies)
        role_arn = iam.get_role(RoleName=task_role)["Role"]["Arn"]
        c = sts.assume_role(RoleArn=role_arn, RoleSessionName="trailwatch-task")["Credentials"]
        creds = {
            "aws_access_key_id": c["AccessKeyId"],
            "aws_secret_access_key": c["SecretAccessKey"],
            "aws_session_token": c["SessionToken"],
        }
        moto.enforce_iam(True)
        try:
            task_s3, task_sqs = moto.client("s3", creds), moto.client("sqs", creds)
            check(
                denied(lambda: task_s3.get_object(Bucket=BUCKET, Key="reports/not-a-trail-file.json")),
                "the task role may read objects outside the log prefix",
            )
            check(
                denied(lambda: task_sqs.receive_message(QueueUrl=outputs["DeadLetterQueueUrl"])),
                "the task role may read the dead-letter queue",
            )
            alerts = run_worker(binary, moto, outputs, creds)
            left = task_sqs.get_queue_attributes(
                QueueUrl=outputs["QueueUrl"],
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        finally:
            moto.enforce_iam(False)
        print(
            f"deploy stack test: the worker, with the task role's credentials, printed {len(alerts)} alerts"
        )

        want = expected_alerts(binary)
        check(want, "trailwatch scan finds no alert in the samples: nothing to compare")
        check(
            sorted(a["alert_id"] for a in alerts) == want,
            f"{len(alerts)} alerts ({', '.join(a['rule_id'] for a in alerts)}), "
            f"want the {len(want)} that trailwatch scan finds in the same files",
        )
        check(
            left == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"},
            f"queue not empty after the run: {left}",
        )
        dlq = sqs.get_queue_attributes(
            QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        check(dlq["ApproximateNumberOfMessages"] == "0", "messages in the dead-letter queue")
        trail_files = sum("CloudTrail-Digest" not in str(f) for f in files)  # digests are skipped
        files_processed = metric_sum(cw, "FilesProcessed")
        check(files_processed == trail_files, f"FilesProcessed = {files_processed}, want {trail_files}")
        high = sum(a["severity"] == "high" for a in alerts)
        got = metric_sum(cw, "Alerts", [{"Name": "Severity", "Value": "high"}])
        check(got == high, f"Alerts Severity=high = {got}, want {high}")
        check_alarm_metrics(cw, template)

        # --- the other wiring: the trail's SNS topic --------------------------------------
        trail_topic = moto.client("sns").create_topic(Name="cloudtrail-notifications")["TopicArn"]
        _, other = create_stack(
            cf,
            "trailwatch-sns",
            {
                "TrailBucketName": BUCKET,
                "Wiring": "CloudTrailSNS",
                "TrailTopicArn": trail_topic,
                "ContainerImage": "trailwatch:test",
                "VpcId": vpc,
                "SubnetIds": subnets[0],
            },
        )
        check(
            "TrailObjectCreatedRule" not in other and "TrailKeyDecryptPolicy" not in other,
            "the CloudTrailSNS stack has the EventBridge rule or the KMS policy",
        )
        check(
            "Queue" in other and "Service" in other, "the CloudTrailSNS stack lacks the queue or the service"
        )
        print("deploy stack test: passed")
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
