resource "aws_key_pair" "operator" {
  key_name   = "clusterkit-${var.cluster_name}"
  public_key = var.public_key

  tags = { Name = "clusterkit-${var.cluster_name}" }
}

locals {
  # A poweroff from inside (the idle guard's) stops or terminates the instance: terminate
  # only when the guard is to terminate; record (the guard only logs) and stop keep the disks.
  shutdown_behavior = var.idle_action == "terminate" ? "terminate" : "stop"

  # cloud-init: root accepts the operator's key too (the playbooks and the kit's run
  # supervisor work as root, as on the rehearsal); passwords are never accepted.
  user_data = <<-EOT
    #cloud-config
    disable_root: false
    ssh_pwauth: false
  EOT

  # Every node boots the same image: the one a made cluster was given (ami_id), else the
  # newest of ami_family.
  node_common = {
    ami = coalesce(var.ami_id, data.aws_ami.node.id)
  }
}

resource "aws_instance" "master" {
  # checkov:skip=CKV_AWS_88:the master is the cluster's one entry point (SSH from the operator's CIDR only) and the NAT instance, so it has the one public address
  # checkov:skip=CKV_AWS_126:detailed monitoring bills per metric; the kit samples each node's memory and CPU itself
  # checkov:skip=CKV_AWS_135:t2 instances cannot be EBS-optimized; the source project's t2.large is the default
  # checkov:skip=CKV2_AWS_41:the nodes call no AWS API, so they get no instance profile (least privilege)
  ami                         = local.node_common.ami
  instance_type               = var.master_instance_type
  subnet_id                   = aws_subnet.public.id
  private_ip                  = local.master_private_ip
  associate_public_ip_address = true
  source_dest_check           = false # a NAT instance forwards the workers' traffic
  vpc_security_group_ids      = [aws_security_group.members.id, aws_security_group.master.id]
  key_name                    = aws_key_pair.operator.key_name
  user_data                   = local.user_data
  monitoring                  = false
  # the idle guard powers nodes off from inside: this makes that a stop or a terminate
  instance_initiated_shutdown_behavior = local.shutdown_behavior

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_gb
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "clusterkit-${var.cluster_name}-master" })
  }

  tags = { Name = "clusterkit-${var.cluster_name}-master", "clusterkit:role" = "master" }
}

resource "aws_instance" "worker" {
  # checkov:skip=CKV_AWS_126:detailed monitoring bills per metric; the kit samples each node's memory and CPU itself
  # checkov:skip=CKV_AWS_135:t2 instances cannot be EBS-optimized; the source project's t2.large is the default
  # checkov:skip=CKV2_AWS_41:the nodes call no AWS API, so they get no instance profile (least privilege)
  count = var.worker_count

  ami                         = local.node_common.ami
  instance_type               = var.worker_instance_type
  subnet_id                   = aws_subnet.private.id
  private_ip                  = local.worker_private_ips[count.index]
  associate_public_ip_address = false
  vpc_security_group_ids      = [aws_security_group.members.id]
  key_name                    = aws_key_pair.operator.key_name
  user_data                   = local.user_data
  monitoring                  = false
  # the idle guard powers nodes off from inside: this makes that a stop or a terminate
  instance_initiated_shutdown_behavior = local.shutdown_behavior

  # Spot workers (worker_market = spot): a persistent request that stops the instance when
  # AWS interrupts it (a one-time request could not be stopped and started by the kit; the
  # request starts the instance again once capacity returns). No maximum price: the spot
  # price is paid, at most the on-demand price.
  dynamic "instance_market_options" {
    for_each = var.worker_market == "spot" ? ["spot"] : []

    content {
      market_type = "spot"

      spot_options {
        spot_instance_type             = "persistent"
        instance_interruption_behavior = "stop"
      }
    }
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_gb
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "clusterkit-${var.cluster_name}-worker-${count.index + 1}" })
  }

  tags = { Name = "clusterkit-${var.cluster_name}-worker-${count.index + 1}", "clusterkit:role" = "worker" }

  # boots once its default route through the master exists
  depends_on = [aws_route_table_association.private]
}
